"""The console's words: Chinese first, English on request (``?lang=en``, then a cookie).

Every string a page shows is a key of ``catalogue.yaml`` (one file, both languages
side by side); a template writes ``t("key")`` or ``t("key", n=3)``. A key missing
from the catalogue shows as itself, and ``tests/unit/test_console.py`` checks
that every key a template or the code uses is there in both languages.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from starlette.requests import Request

LANGUAGES = ("zh", "en")
DEFAULT = "zh"
COOKIE = "ct_console_lang"
CATALOGUE = Path(__file__).with_name("catalogue.yaml")


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """key → {zh, en}, read once from ``catalogue.yaml``."""
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    return {str(k): {lang: str(v[lang]) for lang in LANGUAGES if lang in v} for k, v in data.items()}


def translate(lang: str, key: str, **values) -> str:
    """The text of ``key`` in ``lang`` (Chinese where the English is missing), with ``{name}`` filled in."""
    entry = catalogue().get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get(DEFAULT) or key
    return text.format(**values) if values else text


def language_of(request: Request) -> str:
    """``?lang=`` wins, then the cookie, then Chinese."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    kept = request.cookies.get(COOKIE)
    return kept if kept in LANGUAGES else DEFAULT


def switched(request: Request) -> str | None:
    """The language ``?lang=`` asks to keep (set as the cookie), or None."""
    asked = request.query_params.get("lang")
    return asked if asked in LANGUAGES else None
