# coffeetime: the two commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench chaos docs up migrate clean venv browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

# make demo KEEP=1: leave the stack and the web console running until Ctrl-C
demo: $(STAMP)
	$(BIN)/coffeetime demo $(if $(KEEP),--keep)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# Playwright and a headless Chromium for tests/e2e/test_console_browser.py (Debian's chromium via apt as root)
browser: $(STAMP)
	$(BIN)/python -m tools.browser

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench

# every fault scenario on servers of its own; writes docs/chaos/latest.json, fails on any loss or duplicate
chaos: $(STAMP)
	$(BIN)/python -m tools.chaos

docs: $(STAMP)
	$(BIN)/coffeetime docs --out docs/asyncapi.json

up: $(STAMP)
	$(BIN)/coffeetime up

migrate: $(STAMP)
	$(BIN)/coffeetime migrate

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
