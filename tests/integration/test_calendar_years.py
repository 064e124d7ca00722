"""A revised official calendar on the real NATS and PostgreSQL: load a State Council year, re-plan, tell the units.

The issue's example: an appeal received Friday 2026-12-25 with 5 working days is
due on 2027-01-01 (New Year's Day) while chinese-calendar (1.11) does not know
2027. Loading a 2027 schedule (over HTTP as the lead unit, or by ``coffeetime
calendar load``) moves it past the holiday in one transaction per order: the
firing rows, ``ct.deadline.set`` and ``ct.deadline.moved``, which notify turns
into one message per liaison. A second re-plan moves nothing; the unknown-year
gauge counts the deadline before the load and is cleared after it.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY

from services.escalation import revised_calendar
from services.escalation.__main__ import create_service
from services.escalation.config import context
from services.escalation.unit_of_work import CalendarRepository
from services.notify.__main__ import create_service as create_notify
from shared import clock
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.db import migrate
from shared.district import demo_token, district
from tests.integration.test_escalation import SteppedClock
from tests.support import Recorder, running, wait_for
from tools import calendar as calendar_cli
from tools.sms_sink import LocalSmsSink

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
UNIT = "traffic_police"  # liaisons 吴刚 13800000301, 郑洁 13800000302
EXAMPLE = Path(__file__).parents[2] / "services" / "escalation" / "calendars" / "2027.example.yaml"
SNAPSHOT = ev.OrderPolicy(deadline_days=5, sign_hours=4, district_leader="leader_liu",
                          lead_unit="approval_bureau", supervision_office="supervision_office")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.fixture
def frozen():
    clock.set_clock(SteppedClock(at(2026, 12, 25, 11, 0)))
    try:
        yield
    finally:
        clock.set_clock(None)


@pytest.fixture
async def no_2027(servers, db):
    """2027 unknown before and after the test; the test's orders stop counting as open afterwards."""
    orders: list[str] = []
    await migrate(servers["DATABASE_URL"], "escalation", calendar_cli.MIGRATIONS)
    await db.execute("DELETE FROM escalation.calendar_years WHERE year = 2027")
    yield orders
    await db.execute("DELETE FROM escalation.calendar_years WHERE year = 2027")
    await db.execute("UPDATE escalation.orders SET replied_at = dispatched_at WHERE order_id = ANY($1::text[])",
                     orders)
    context().calendar.set_loaded_years([])
    context().calendar_sync.signature = None


@pytest.fixture
async def recorder(nc):
    rec = await Recorder(nc).watch("ct.deadline.>")
    yield rec
    await rec.close()


async def dispatch_on_christmas(js, db, orders: list[str]) -> tuple[str, str]:
    """An order of an appeal received 2026-12-25 10:00 with 5 working days; waits until its deadline is stored."""
    appeal = f"CT-C{uuid.uuid4().hex[:12]}"
    order = f"{appeal}-01"
    orders.append(order)
    event = ev.OrderDispatched(
        event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=at(2026, 12, 25, 10, 30), appeal_id=appeal,
        source_ref="hotline:CALL-C", correlation_id=f"corr-{appeal}", actor="system", order_id=order,
        unit_code=UNIT, unit=district().unit(UNIT).name, role="lead", category="交通出行", reasons=["test"],
        received_at=at(2026, 12, 25, 10, 0), deadline_days=5, sign_hours=4, reopen_count=0, policy=SNAPSHOT,
        summary="东航中心路口左转车道通行不便", enterprise_name="四川东航投资有限公司")
    await js.publish(subjects.ORDER_DISPATCHED, event.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": event.event_id})

    async def stored():
        return await db.fetchrow("SELECT * FROM escalation.orders WHERE order_id = $1"
                                 " AND handling_due_published IS NOT NULL", order)
    row = await wait_for(stored, what="the deadline stored")
    return appeal, row


def unknown_gauge(year: int) -> float | None:
    return REGISTRY.get_sample_value("coffeetime_deadlines_in_unknown_year", {"year": str(year)})


def ahead_gauge(unit: str, day: int) -> float | None:
    return REGISTRY.get_sample_value("coffeetime_deadlines_due_ahead", {"unit_code": unit, "day": str(day)})


def moved_of(recorder: Recorder, order: str) -> list[dict]:
    return recorder.on(subjects.DEADLINE_MOVED, order_id=order)


def handling_sets(recorder: Recorder, order: str) -> list[str]:
    return [b["due_at"] for b in recorder.on(subjects.DEADLINE_SET, order_id=order) if b["clock"] == "handling"]


async def test_a_2027_schedule_loaded_over_http_moves_the_new_year_deadline_and_tells_the_unit_once(
        servers, frozen, js, db, recorder, no_2027):
    lead = demo_token(district().lead_unit.unit_code)
    async with LocalSmsSink() as sink, \
            running(create_notify, servers, sms_gateway_url=sink.url, quiet_hours=""), \
            running(create_service, servers, scan_interval_s=0.05) as escalation:
        ctx = revised_calendar_ctx(escalation)
        appeal, row = await dispatch_on_christmas(js, db, no_2027)
        order = row["order_id"]
        # without 2027: due on New Year's Day, planned on the Monday-Friday guess
        assert row["handling_due"] == at(2027, 1, 1, 17, 30)
        unknown = await revised_calendar.refresh_deadline_gauges(escalation.unit_of_work, ctx, clock.now())
        assert unknown.get(2027, 0) >= 1 and unknown_gauge(2027) >= 1
        assert ahead_gauge(UNIT, 0) is not None  # the horizon covers every unit and day, zeros included

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=escalation.http),
                                     base_url="http://escalation") as http:
            # refused: no token, a handling unit's token; a bad file names each bad entry and stores nothing
            assert (await http.post("/calendar/years", content=EXAMPLE.read_bytes())).status_code == 401
            refused = await http.post("/calendar/years", content=EXAMPLE.read_bytes(),
                                      headers={"Authorization": f"Bearer {demo_token(UNIT)}"})
            assert refused.status_code == 403
            bad = await http.post("/calendar/years", headers={"Authorization": f"Bearer {lead}"},
                                  content="year: 2027\nholidays: [{name: 元旦, dates: [2027-01-01, 2028-01-01]}]\n"
                                          "workdays: [{date: 2027-01-06}]\n".encode())
            assert bad.status_code == 422
            assert [e["field"] for e in bad.json()["errors"]] == ["holidays[0].dates[1]", "workdays[0].date"]
            assert await db.fetchval("SELECT count(*) FROM escalation.calendar_years WHERE year = 2027") == 0

            # a dry run lists the move and changes nothing
            dry = await http.post("/calendar/years?dry_run=true", content=EXAMPLE.read_bytes(),
                                  headers={"Authorization": f"Bearer {lead}", "Content-Type": "application/yaml"})
            assert dry.status_code == 200 and dry.json()["outcome"] == "would_load"
            assert _move(dry.json()["replan"], order) == {
                "order_id": order, "appeal_id": appeal, "unit_code": UNIT, "clock": "handling",
                "from": "2027-01-01T17:30:00+08:00", "to": "2027-01-04T17:30:00+08:00",
                "working_days": 1, "calendar_days": 3}
            assert await db.fetchval("SELECT count(*) FROM escalation.calendar_years WHERE year = 2027") == 0

            loaded = await http.post("/calendar/years", content=EXAMPLE.read_bytes(),
                                     headers={"Authorization": f"Bearer {lead}", "Content-Type": "application/yaml"})
            assert loaded.status_code == 200, loaded.text
            assert loaded.json()["outcome"] == "loaded"
            assert _move(loaded.json()["replan"], order)["to"] == "2027-01-04T17:30:00+08:00"

            # one transaction moved the firing rows, the published deadline and the notice
            await wait_for(lambda: moved_of(recorder, order), what="ct.deadline.moved")
            await wait_for(lambda: "2027-01-04T17:30:00+08:00" in handling_sets(recorder, order),
                           what="ct.deadline.set of the new deadline")
            row = await db.fetchrow("SELECT * FROM escalation.orders WHERE order_id = $1", order)
            assert row["handling_due"] == row["handling_due_published"] == at(2027, 1, 4, 17, 30)
            pending = await db.fetch("SELECT step_key, due_at FROM escalation.firings WHERE order_id = $1"
                                     " AND clock = 'handling' AND fired_at IS NULL AND cancelled_at IS NULL", order)
            assert pending and {r["due_at"] for r in pending} == {at(2027, 1, 4, 17, 30)}
            cancelled = await db.fetch("SELECT due_at FROM escalation.firings WHERE order_id = $1"
                                       " AND cancelled_at IS NOT NULL", order)
            assert {r["due_at"] for r in cancelled} == {at(2027, 1, 1, 17, 30)}

            # the unit's liaisons hear it once each (SMS), in Chinese
            texts = await wait_for(lambda: [m["text"] for m in sink.messages if order in m["text"]
                                            and "时限由" in m["text"]] if len(
                [m for m in sink.messages if order in m["text"] and "时限由" in m["text"]]) >= 2 else None,
                what="the liaisons' SMS")
            assert len(texts) == 2 and all("1月1日 17:30调整为1月4日 17:30（顺延1个工作日）" in t for t in texts)

            # a second re-plan, and the same file again, move nothing and tell nobody again
            again = await http.post("/calendar/replan", headers={"Authorization": f"Bearer {lead}"})
            assert again.status_code == 200 and _move(again.json(), order) is None
            same = await http.post("/calendar/years", content=EXAMPLE.read_bytes(),
                                   headers={"Authorization": f"Bearer {lead}"})
            assert same.json()["outcome"] == "unchanged" and _move(same.json()["replan"], order) is None
            shown = (await http.get("/calendar/years/2027")).json()
            assert shown["source"] == "loaded" and shown["loaded_by"] == "http:approval_bureau"

        # the gauge is cleared: no open deadline in a year nobody knows
        unknown = await revised_calendar.refresh_deadline_gauges(escalation.unit_of_work, ctx, clock.now())
        assert 2027 not in unknown and unknown_gauge(2027) == 0
        await wait_for(lambda: _outbox_empty(db), what="escalation's outbox relayed")
        assert len(moved_of(recorder, order)) == 1
        assert len([m for m in sink.messages if order in m["text"] and "时限由" in m["text"]]) == 2
        assert await db.fetchval("SELECT count(DISTINCT cause_event_id) FROM notify.notifications"
                                 " WHERE cause_subject = $1 AND appeal_id = $2", subjects.DEADLINE_MOVED, appeal) == 1


async def test_the_command_loads_a_year_prints_the_diff_and_a_second_replan_moves_nothing(
        servers, frozen, js, db, recorder, no_2027, capsys, tmp_path):
    async with running(create_service, servers, scan_interval_s=0.05) as escalation:
        ctx = revised_calendar_ctx(escalation)
        _, row = await dispatch_on_christmas(js, db, no_2027)
        order = row["order_id"]
        assert row["handling_due"] == at(2027, 1, 1, 17, 30)
        capsys.readouterr()
        # the horizon as of Tuesday 2026-12-29: due 1 January is day 3
        horizon_at = at(2026, 12, 29, 11, 0)
        await revised_calendar.refresh_deadline_gauges(escalation.unit_of_work, ctx, horizon_at)
        day3, day6 = ahead_gauge(UNIT, 3), ahead_gauge(UNIT, 6)
        assert day3 >= 1

        bad = tmp_path / "2027.yaml"
        bad.write_text("year: 2027\nholidays: []\n", encoding="utf-8")
        assert await calendar_cli.run(_args("load", file=str(bad)), servers["DATABASE_URL"]) == 2
        assert "holidays: no holiday listed for 2027" in capsys.readouterr().err

        assert await calendar_cli.run(_args("load", file=str(EXAMPLE)), servers["DATABASE_URL"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("2027: loaded")
        assert (f"{order}  {UNIT}  handling  2027-01-01 17:30 -> 2027-01-04 17:30"
                "  +1 working day(s), +3 calendar day(s)") in out

        # the running replica: its next clock batch, or its poll, plans on the loaded year
        await wait_for(lambda: ctx.calendar.source_of(2027) == "loaded", what="the replica took up 2027")
        await wait_for(lambda: "2027-01-04T17:30:00+08:00" in handling_sets(recorder, order),
                       what="the CLI's ct.deadline.set relayed by the running replica")
        assert len(moved_of(recorder, order)) == 1
        # ... and after the load, due 4 January: day 6
        await revised_calendar.refresh_deadline_gauges(escalation.unit_of_work, ctx, horizon_at)
        assert (ahead_gauge(UNIT, 3), ahead_gauge(UNIT, 6)) == (day3 - 1, day6 + 1)

        assert await calendar_cli.run(_args("replan"), servers["DATABASE_URL"]) == 0
        out = capsys.readouterr().out
        assert order not in out and "deadline(s) of 0 order(s) moved" in out
        assert await calendar_cli.run(_args("replan", dry_run=True), servers["DATABASE_URL"]) == 0
        assert order not in capsys.readouterr().out
        assert await calendar_cli.run(_args("show", year=2027), servers["DATABASE_URL"]) == 0
        shown = capsys.readouterr().out
        assert shown.startswith("2027: loaded") and "元旦: 2027-01-01" in shown
        await wait_for(lambda: _outbox_empty(db), what="escalation's outbox relayed")
        assert len(moved_of(recorder, order)) == 1


async def test_a_local_override_added_re_plans_the_open_deadlines_at_start_up(
        servers, frozen, js, db, recorder, no_2027, tmp_path, monkeypatch):
    async with running(create_service, servers, scan_interval_s=0.05):
        _, row = await dispatch_on_christmas(js, db, no_2027)
        order = row["order_id"]
        assert row["handling_due"] == at(2027, 1, 1, 17, 30)
    # the district declares 31 December a local day off, and restarts escalation
    config = tmp_path / "escalation.yaml"
    config.write_text("calendar_overrides:\n  2026-12-31: false\n", encoding="utf-8")
    monkeypatch.setenv("ESCALATION_CONFIG", str(config))
    context.cache_clear()
    try:
        async with running(create_service, servers, scan_interval_s=0.05):
            moved = await wait_for(lambda: moved_of(recorder, order), what="the start-up re-plan")
            assert (moved[0]["previous_due_at"], moved[0]["due_at"]) == (
                "2027-01-01T17:30:00+08:00", "2027-01-04T17:30:00+08:00")
            assert "local overrides: 1" in moved[0]["reason"]
            await wait_for(lambda: "2027-01-04T17:30:00+08:00" in handling_sets(recorder, order),
                           what="ct.deadline.set of the re-planned deadline")
        # restarted again with the same override: nothing moves twice
        async with running(create_service, servers, scan_interval_s=0.05) as again:
            watch = again.background_owner(type(context()))
            await wait_for(lambda: watch.calendar_sync.replans >= 1, what="the start-up re-plan done")
            await wait_for(lambda: _outbox_empty(db), what="escalation's outbox relayed")
        assert len(moved_of(recorder, order)) == 1
    finally:
        monkeypatch.delenv("ESCALATION_CONFIG")
        context.cache_clear()


# --- helpers ---------------------------------------------------------------------------


def revised_calendar_ctx(service):
    return service.background_owner(type(context()))


def _move(report: dict, order: str) -> dict | None:
    found = [m for m in report["moves"] if m["order_id"] == order]
    assert len(found) <= 1
    return found[0] if found else None


def _args(command: str, **values) -> argparse.Namespace:
    defaults = {"file": None, "dry_run": False, "over_package": False, "json": False, "year": None}
    return argparse.Namespace(calendar_command=command, **(defaults | values))


async def _outbox_empty(db) -> bool:
    return await db.fetchval("SELECT count(*) FROM escalation.outbox") == 0


async def test_a_stored_year_edited_into_a_bad_one_is_left_out_and_stops_nothing(servers, db, no_2027, caplog):
    await db.execute(
        "INSERT INTO escalation.calendar_years (year, document, digest, source, loaded_at, loaded_by)"
        " VALUES (2027, $1::jsonb, 'bad', '', now(), 'by hand')",
        '{"year": 2027, "holidays": [{"name": "元旦", "dates": ["2028-01-01"]}]}')
    conn = await asyncpg.connect(servers["DATABASE_URL"], server_settings={"search_path": "escalation"})
    try:
        repository = CalendarRepository(conn)
        assert await repository.signature() == "2027:bad"
        assert await repository.years() == []
    finally:
        await conn.close()
    assert "left out" in caplog.text
