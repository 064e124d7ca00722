"""The programme's published cases (../shared/domain/seed_cases.json), for the demo, the tests and the benchmark."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

PACKAGED = Path(__file__).with_name("data") / "seed_cases.json"
"""A copy shipped with the package, for a checkout without the programme's shared folder beside it."""


def shared_dir() -> Path:
    """The project's shared folder: ``$COFFEETIME_SHARED``, else ``shared/`` beside the repository."""
    return Path(os.environ.get("COFFEETIME_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def seed_path() -> Path:
    """``domain/seed_cases.json`` of the shared folder, else the packaged copy."""
    path = shared_dir() / "domain" / "seed_cases.json"
    return path if path.exists() else PACKAGED


@lru_cache(maxsize=1)
def seed() -> dict:
    return json.loads(seed_path().read_text(encoding="utf-8"))


def case(key: str) -> dict:
    return next(c for c in seed()["cases"] if c["key"] == key)


PUBLISHED_UNITS = {"A": "traffic_police", "B": "airport_services", "C": "sanitation", "D": "huangshui_town",
                   "E": "hr_bureau"}
"""The unit_code each published case was handled by (D with energy_office and power_supply co-handling)."""
