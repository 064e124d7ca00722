"""Hot topics (热点研判) on the real servers: hotline calls through intake, then GET /topics and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from services.intake import use_cases
from services.intake.__main__ import create_service
from shared.access import API_KEY_HEADER, DEMO_READ_KEY
from shared.contracts import OrderDispatched, subjects
from tests.support import publish, running, wait_for
from tests.unit.test_topics import file_appeals, lamp, power, received_at

pytestmark = pytest.mark.integration

#: a month far from the other tests' appeals (they are received now)
MONTH = "2021-06"


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def intake(servers):
    async with running(create_service, servers) as service:
        yield service


def call_of(row: dict, index: int, run: str) -> dict:
    call = {"call_id": f"TOPICS-{run}-{index:03d}", "received_at": received_at(row, MONTH).isoformat(),
            "caller_phone": row["phone"], "content": row["content"], "kind": row.get("kind", "appeal")}
    if row.get("category"):
        call["category_hint"] = row["category"]
    return call


async def test_the_month_of_hotline_calls_gives_its_growing_theme_over_http_and_the_cli(intake, js, db, run_id,
                                                                                          servers):
    rows = file_appeals()
    for i, row in enumerate(rows):
        call = call_of(row, i, run_id)
        await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])

    async def registered() -> dict[int, str]:
        found = await db.fetch("SELECT source_id, appeal_id FROM intake.appeals WHERE source_id LIKE $1",
                               f"TOPICS-{run_id}-%")
        return {int(r["source_id"].rsplit("-", 1)[1]): r["appeal_id"] for r in found}

    ids = await wait_for(lambda: _all(registered(), len(rows)), timeout=20, what="every call registered")

    # the one 停电 call without a hint was routed as 水电气保障: dispatch's event, as intake keeps it
    unhinted = next(i for i, r in enumerate(rows) if power(r) and r["month"] == 0 and not r.get("category"))
    routed = OrderDispatched(
        event_id=f"topics-{run_id}", occurred_at=datetime.now(UTC), appeal_id=ids[unhinted], order_id=f"WO-{run_id}",
        unit_code="power_supply", unit="国网供电公司", role="lead", category="水电气保障",
        received_at=received_at(rows[unhinted], MONTH), deadline_days=10, sign_hours=4)
    assert await use_cases.record_timeline(intake.unit_of_work(),
                                           [(subjects.ORDER_DISPATCHED, routed, routed.event_id)]) == 1

    power_ids = {ids[i] for i, r in enumerate(rows) if power(r) and r["month"] == 0}
    lamp_ids = {ids[i] for i, r in enumerate(rows) if lamp(r)}
    transport = httpx.ASGITransport(app=intake.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake",
                                 headers={API_KEY_HEADER: DEMO_READ_KEY}) as http:
        answer = await http.get("/topics", params={"month": MONTH})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["appeals"] == 22 and report["previous_appeals"] == [11, 12, 13]
        proposal = report["proposal"]
        assert proposal["basis"] == "theme" and "停电" in proposal["title"]
        assert {a["appeal_id"] for a in proposal["supporting"]} == power_ids
        categories = {c["category"]: c for c in report["categories"]}
        assert categories["水电气保障"]["count"] == 8  # seven hints and the routed one
        assert categories["水电气保障"]["previous"] == [1, 1, 2]
        assert [set(g["appeal_ids"]) for g in report["repeated"]] == [lamp_ids]
        assert report["repeated"][0]["same_enterprise"] is True

        as_csv = await http.get("/topics", params={"month": MONTH, "format": "csv"})
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        assert as_csv.content.startswith("\ufeff".encode())
        rows_csv = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"), newline="")))
        assert rows_csv[1][0] == "每月一题" and set(rows_csv[1][11].split()) == power_ids

        table = await http.get("/topics", params={"month": MONTH, "format": "table"})
        assert table.status_code == 200 and proposal["title"] in table.text

        for bad in ({"month": "2021-13"}, {"month": MONTH, "format": "xml"}, {"month": MONTH, "months_back": 0}):
            refused = await http.get("/topics", params=bad)
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert {e["field"] for e in refused.json()["errors"]} <= {"month", "format", "months_back"}
            assert refused.json()["errors"]

    env = {**os.environ, "DATABASE_URL": servers["DATABASE_URL"], "NATS_URL": servers["NATS_URL"]}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "tools.cli", "topics", "--month", MONTH, "--format", "json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == report  # the same document as over HTTP


async def _all(found, expected: int):
    got = await found
    return got if len(got) == expected else None
