"""``coffeetime`` on typer: every command the README, Makefile and deploy files name, help in both languages.

Through the installed entry point (``.venv/bin/coffeetime``) where the help is
read, as a person reads it; the usage errors through :func:`tools.cli.main`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import cli

COFFEETIME = str(Path(sys.executable).with_name("coffeetime"))
CJK = re.compile(r"[\u4e00-\u9fff]")

# what README.md, the Makefile, deploy/ (compose, k8s, helm, alerts) and the tests call
COMMANDS = {
    (): ["up", "run", "migrate", "demo", "report", "topics", "routing-eval", "dlq", "notify", "calendar", "chaos",
         "followups", "survey", "figures", "docs"],
    ("dlq",): ["list", "replay"],
    ("notify",): ["failed", "retry-failed"],
    ("calendar",): ["load", "show", "replan"],
    ("followups",): ["draw", "list"],
    ("survey",): ["import", "list"],
}
OPTIONS = {
    ("report",): ["--month", "--format", "--lang", "--out", "--min-orders"],
    ("topics",): ["--month", "--format", "--months-back", "--out"],
    ("demo",): ["--keep"],
    ("routing-eval",): ["--format", "--config", "--unseen", "--tune"],
    ("dlq", "list"): ["--subject", "--format"],
    ("dlq", "replay"): ["--all", "--subject", "--force", "--format"],
    ("notify", "retry-failed"): ["--channel", "--since", "--id", "--limit", "--json", "--yes"],
    ("calendar", "load"): ["--dry-run", "--over-package", "--json"],
    ("calendar", "replan"): ["--dry-run", "--json"],
    ("chaos",): ["--scenario", "--calls", "--rate", "--out", "--kill-every", "--pg-outage", "--nats-outage",
                 "--sms-outage", "--seed", "--keep"],
    ("followups", "draw"): ["--month", "--share", "--seed", "--json"],
    ("followups", "list"): ["--month", "--contradicted", "--json"],
    ("survey", "import"): ["--month"],
    ("figures",): ["--from", "--to", "--format"],
    ("docs",): ["--out"],
}


def help_of(*words: str, lang: str = "") -> str:
    env = {**os.environ, "COLUMNS": "200", "COFFEETIME_LANG": lang, "NO_COLOR": "1"}
    done = subprocess.run([COFFEETIME, *words, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_command_is_listed_with_its_help_in_chinese_then_english():
    for words, names in COMMANDS.items():
        text = help_of(*words)
        for name in names:
            line = next((ln for ln in text.splitlines() if re.search(rf"(^|\s){re.escape(name)}\s", ln)), None)
            assert line is not None, f"coffeetime {' '.join(words)}: {name} not listed"
            zh, _, en = line.partition(" / ")
            assert CJK.search(zh) and re.search(r"[a-z]{3,}", en), line
    assert "企业咖啡时" in help_of() and "enterprise appeals" in help_of()


def test_every_option_the_docs_and_scripts_use_is_there():
    for words, options in OPTIONS.items():
        text = help_of(*words)
        for option in options:
            assert re.search(rf"{re.escape(option)}\b", text), f"coffeetime {' '.join(words)}: {option}"
    report = help_of("report")
    for fmt in ("table", "json", "csv", "xlsx", "pdf", "png"):
        assert fmt in report


def test_coffeetime_lang_shows_one_language():
    chinese, english = help_of("report", lang="zh"), help_of("report", lang="en")
    assert "本月单位考评排名" in chinese and "the month's evaluation" not in chinese
    assert "the month's evaluation" in english and "本月单位考评排名" not in english


@pytest.mark.parametrize("argv", [
    ["report", "--format", "xml"], ["report", "--lang", "fr"], ["run", "nope"], ["migrate", "intake", "nope"],
    ["chaos", "--scenario", "nope"], ["figures", "--from", "2026-13-01", "--to", "2026-12-31"],
    ["notify", "failed", "--since", "yesterday"], ["dlq"], ["nope"], [],
])
def test_a_usage_error_exits_2_as_argparse_did(argv, capsys):
    assert cli.main(argv) == 2
    printed = capsys.readouterr()
    assert "Usage" in printed.err + printed.out


def test_a_binary_report_at_a_terminal_asks_for_out(monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.main(["report", "--month", "2026-11", "--format", "xlsx"]) == 2
    assert "--out" in capsys.readouterr().err
