"""``coffeetime migrate`` then ``coffeetime report`` as processes on the real PostgreSQL: each format to a file or
to standard output, what scripts read stays the plain document (no progress, no rich markup).

The figures themselves (counts, rates, the units' Chinese names) are tested in
tests/unit/test_report_exports.py and, over HTTP with real events,
tests/integration/test_escalation.py.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.escalation import evaluation

pytestmark = pytest.mark.integration
COFFEETIME = str(Path(sys.executable).with_name("coffeetime"))
MONTH = "2026-11"


async def coffeetime(servers, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": servers["DATABASE_URL"], "NATS_URL": servers["NATS_URL"]}
    return await asyncio.to_thread(subprocess.run, [COFFEETIME, *args], capture_output=True, env=env, timeout=120)


async def test_the_report_command_writes_every_format_and_json_stays_plain(servers, tmp_path):
    migrated = await coffeetime(servers, "migrate", "escalation")
    assert migrated.returncode == 0, migrated.stderr.decode()
    assert b"escalation:" in migrated.stdout and b"NATS: streams up to date" in migrated.stdout

    printed = await coffeetime(servers, "report", "--month", MONTH, "--format", "json")
    assert printed.returncode == 0, printed.stderr.decode()
    document = json.loads(printed.stdout)  # the whole of standard output is the document
    assert document["month"] == MONTH and "score = 100" in document["formula"]
    assert b"\x1b[" not in printed.stdout + printed.stderr  # no colours or progress bars when not at a terminal

    listed = await coffeetime(servers, "report", "--month", MONTH, "--format", "csv")
    assert listed.stdout.startswith(b"\xef\xbb\xbf")
    header = next(csv.reader(io.StringIO(listed.stdout.decode("utf-8-sig"), newline="")))
    assert header == [c.zh for c in evaluation.COLUMN_TABLE]

    from openpyxl import load_workbook

    for fmt, magic in (("xlsx", b"PK"), ("pdf", b"%PDF-"), ("png", b"\x89PNG")):
        out = tmp_path / f"units.{fmt}"
        written = await coffeetime(servers, "report", "--month", MONTH, "--format", fmt, "--lang", "en",
                                   "--out", str(out))
        assert written.returncode == 0, written.stderr.decode()
        assert out.read_bytes().startswith(magic) and f"wrote {out}".encode() in written.stderr
        assert written.stdout == b""
    book = load_workbook(tmp_path / "units.xlsx")
    assert next(book["Ranking"].iter_rows(values_only=True)) == tuple(c.en for c in evaluation.COLUMN_TABLE)

    refused = await coffeetime(servers, "report", "--month", "2026-13")
    assert refused.returncode == 2 and b"2026-13" in refused.stderr
