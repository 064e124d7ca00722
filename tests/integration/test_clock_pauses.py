"""Clocks as data on the real NATS and PostgreSQL: pause and resume end to end, a redispatch's two clocks,
rescheduling in one transaction, the catch-up after an outage.

Intake, dispatch and escalation run in this process (the first two tests); time is
driven with ``shared.clock.set_clock`` (test_escalation's ``frozen``), which every
service and the scanner read.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import httpx
import pytest

from services.dispatch.__main__ import create_service as create_dispatch
from services.escalation import store, use_cases
from services.escalation.__main__ import create_service as create_escalation
from services.escalation.__main__ import scanner_of
from services.intake.__main__ import create_service as create_intake
from shared.contracts import subjects
from shared.workcalendar import WorkCalendar
from tests.integration.test_escalation import (  # noqa: F401, F811 - frozen is a fixture
    StreamRecorder,
    at,
    dispatched,
    fact,
    firing_rows,
    frozen,
    new_appeal,
    send,
    settle,
    signed,
    steps,
)
from tests.support import publish, running, wait_for

pytestmark = pytest.mark.integration

CAL = WorkCalendar()
TP = {"Authorization": "Bearer token-traffic_police"}
LEAD = {"Authorization": "Bearer token-approval_bureau"}
# Monday 2 November 2026; 交通出行: 5 working days, so the appeal is due Monday 9 November 17:30
RECEIVED = at(2026, 11, 2, 9, 0)
DUE = at(2026, 11, 9, 17, 30)


@pytest.fixture
async def rec(nc):
    recorder = await StreamRecorder(nc).watch("ct.order.>", "ct.deadline.>", subjects.APPEAL_ESCALATED,
                                              subjects.APPEAL_REGISTERED)
    yield recorder
    await recorder.close()


@pytest.fixture
def monday(frozen):  # noqa: F811 - the fixture
    frozen.set(at(2026, 11, 2, 9, 30))
    return frozen


def a_call(marker: str) -> dict:
    return {"call_id": f"CLK-{uuid.uuid4().hex[:10]}", "received_at": RECEIVED.isoformat(),
            "caller_phone": "139" + str(uuid.uuid4().int)[:8], "enterprise_name": "四川东航投资有限公司", "category_hint": "交通出行",
            "content": f"东航中心附近路口的左转车道通行不便，路口车辆乱停乱放。{marker}"}


def sets(rec, order_id: str, clock: str = "handling") -> list[dict]:
    return sorted(rec.on(subjects.DEADLINE_SET, order_id=order_id, clock=clock), key=lambda b: b["_seq"])


async def act(js, unit: str, action: str, order_id: str, **fields) -> None:
    action_id = f"A-{uuid.uuid4().hex[:10]}"
    await publish(js, subjects.order_action_subject(unit, action),
                  {"action_id": action_id, "order_id": order_id, "actor": "吴刚", **fields}, msg_id=action_id)


async def dispatched_order(js, rec, call: dict) -> dict:
    """Publish the call; its appeal's first work order as dispatched."""
    await publish(js, subjects.IN_HOTLINE, call, msg_id=call["call_id"])
    (registered,) = await wait_for(lambda: rec.on(subjects.APPEAL_REGISTERED, source_id=call["call_id"]),
                                   what="registered")
    return (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, appeal_id=registered["appeal_id"]),
                           what="dispatched"))[0]


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_paused_clock_neither_warns_nor_escalates_and_its_resume_moves_the_deadline_and_the_status_shows_it(
        servers, monday, js, nc, db, rec):
    call = a_call(uuid.uuid4().hex[:6])
    async with (running(create_intake, servers), running(create_dispatch, servers) as dispatch,
                running(create_escalation, servers, scan_interval_s=0.05) as escalation,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=dispatch.http), base_url="http://d") as http):
        order = await dispatched_order(js, rec, call)
        order_id, unit, appeal_id = order["order_id"], order["unit_code"], order["appeal_id"]
        assert unit == "traffic_police"
        await wait_for(lambda: sets(rec, order_id), what="the handling deadline")
        assert dt(sets(rec, order_id)[0]["due_at"]) == DUE and sets(rec, order_id)[0]["cause"] == "started"
        await act(js, unit, "sign", order_id)
        await fact(db, order_id, "signed_at IS NOT NULL")

        # Wednesday 10:00: the unit waits for the enterprise's papers (over HTTP: the same use case)
        paused_at = at(2026, 11, 4, 10, 0)
        monday.set(paused_at)
        answer = await http.post(f"/orders/{order_id}/pause", headers=TP,
                                 json={"action_id": f"P-{uuid.uuid4().hex[:8]}", "actor": "吴刚",
                                       "reason": "等待企业补充路口平面图"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["subjects"] == [subjects.ORDER_PAUSED]
        again = await http.post(f"/orders/{order_id}/pause", headers=TP,
                                json={"action_id": f"P-{uuid.uuid4().hex[:8]}", "actor": "吴刚", "reason": "再停"})
        assert again.status_code == 409 and again.json()["rule"] == "ClockIsPausedOnce"
        paused = (await wait_for(lambda: [s for s in sets(rec, order_id) if s["cause"] == "paused"],
                                 what="the paused deadline"))[0]
        assert dt(paused["paused_since"]) == paused_at
        assert dt(paused["resumes_by"]) == CAL.add_working_hours(paused_at, 10 * 7)  # ten working days of 7 h
        # the lead unit sees it on its list
        listed = (await http.get("/orders?paused=true", headers=LEAD)).json()["items"]
        mine = [o for o in listed if o["order_id"] == order_id]
        assert mine and mine[0]["pause_reason"] == "等待企业补充路口平面图" and mine[0]["paused_count"] == 1

        # Friday 16:00, past the un-paused clock's 75 % warning (Friday 15:45): no warning while paused
        resumed_at = at(2026, 11, 6, 16, 0)
        monday.set(resumed_at)
        await settle(db, escalation)
        assert steps(rec, order_id) == []
        await act(js, unit, "resume", order_id, note="平面图已收到")
        moved = CAL.add_working_hours(DUE, CAL.working_seconds_between(paused_at, resumed_at) / 3600)
        resumed = (await wait_for(lambda: [s for s in sets(rec, order_id) if s["cause"] == "resumed"],
                                  what="the resumed deadline"))[0]
        assert dt(resumed["due_at"]) == moved == at(2026, 11, 12, 15, 0)
        assert resumed["paused_working_seconds"] == 18.5 * 3600 and resumed["paused_since"] is None
        # the firing rows moved with it: the pending steps are the new deadline's
        pending = [r for r in await firing_rows(db, order_id)
                   if r["clock"] == "handling" and r["fired_at"] is None and r["cancelled_at"] is None]
        assert {r["due_at"] for r in pending} == {moved}
        # the moved 75 % warning (Wednesday 11:45: Friday 15:45 moved by the 18.5 working hours) fires once
        monday.set(at(2026, 11, 11, 12, 0))
        await wait_for(lambda: steps(rec, order_id) == [("handling", "warning_75")], what="the moved warning")
        warning = rec.on(subjects.DEADLINE_WARNING, order_id=order_id)[0]
        assert dt(warning["due_at"]) == moved

        # the status (ct.q.appeal) shows the clock timeline with its causes
        async def timeline():
            reply = json.loads((await nc.request(subjects.Q_APPEAL, json.dumps({"appeal_id": appeal_id}).encode(),
                                                 timeout=5)).data)
            kinds = [c["kind"] for c in reply["clock"]]
            return reply if "warning" in kinds and "resumed" in kinds else None
        status = await wait_for(timeline, what="the clock timeline")
        kinds = [c["kind"] for c in status["clock"]]
        for expected in ("started", "deadline", "stopped", "paused", "resumed", "warning"):
            assert expected in kinds
        assert kinds.index("paused") < kinds.index("resumed") < kinds.index("warning")
        pause_entry = next(c for c in status["clock"] if c["kind"] == "paused")
        assert "等待企业补充路口平面图" in pause_entry["cause"]
        causes = [c["cause"] for c in status["clock"] if c["kind"] == "deadline" and c["clock"] == "handling"]
        assert any("resumed" in c for c in causes) and any("paused" in c for c in causes)
        assert status["paused"] is False


async def test_a_redispatched_order_keeps_the_appeal_clock_and_its_pause_and_starts_its_units_own_clock(
        servers, monday, js, db, rec):
    call = a_call(uuid.uuid4().hex[:6])
    async with (running(create_intake, servers), running(create_dispatch, servers) as dispatch,
                running(create_escalation, servers, scan_interval_s=0.05) as escalation,
                httpx.AsyncClient(transport=httpx.ASGITransport(app=dispatch.http), base_url="http://d") as http):
        first = await dispatched_order(js, rec, call)
        await act(js, first["unit_code"], "sign", first["order_id"])
        await fact(db, first["order_id"], "signed_at IS NOT NULL")
        # paused Tuesday 10:00-14:30 (three working hours), then the lead unit moves the order
        monday.set(at(2026, 11, 3, 10, 0))
        await act(js, first["unit_code"], "pause", first["order_id"], reason="等待企业补充材料")
        await fact(db, first["order_id"], "pauses <> '[]'::jsonb")
        monday.set(at(2026, 11, 3, 14, 30))
        answer = await http.post(f"/orders/{first['order_id']}/redispatch", headers=LEAD,
                                 json={"action_id": f"R-{uuid.uuid4().hex[:8]}", "actor": "王科长",
                                       "unit_code": "transport_bureau"})
        assert answer.status_code == 200, answer.text
        second = (await wait_for(lambda: rec.on(subjects.ORDER_DISPATCHED, unit_code="transport_bureau"),
                                 what="the new order"))[0]
        assert second["replaces_order_id"] == first["order_id"] and len(second["pauses"]) == 1
        # the new unit signs on Thursday: its own clock starts then; the appeal's keeps counting from receipt
        monday.set(at(2026, 11, 5, 10, 0))
        await act(js, "transport_bureau", "sign", second["order_id"])
        paused_hours = CAL.working_seconds_between(at(2026, 11, 3, 10, 0), at(2026, 11, 3, 14, 30)) / 3600
        appeal_due = CAL.add_working_hours(DUE, paused_hours)
        unit_due = CAL.add_working_days(at(2026, 11, 5, 10, 0), 5)
        await wait_for(lambda: sets(rec, second["order_id"], "unit"), what="the unit's own clock")
        assert dt(sets(rec, second["order_id"])[-1]["due_at"]) == appeal_due == at(2026, 11, 10, 12, 0)
        assert dt(sets(rec, second["order_id"], "unit")[-1]["due_at"]) == unit_due == at(2026, 11, 12, 17, 30)
        assert sets(rec, second["order_id"], "unit")[-1]["cause"] == "started"
        row = await fact(db, second["order_id"], "unit_due IS NOT NULL")
        assert (row["handling_due"], row["unit_due"]) == (appeal_due, unit_due)
        await wait_for(lambda: db.fetchval("SELECT unit_due_at FROM dispatch.orders WHERE order_id = $1",
                                           second["order_id"]), what="dispatch keeps the unit clock")

        # past the appeal's deadline, within the unit's: the ladder climbs on the appeal's clock ...
        monday.set(at(2026, 11, 11, 10, 0))
        await wait_for(lambda: ("handling", "overdue") in steps(rec, second["order_id"]), what="overdue (督办)")
        await settle(db, escalation)
        # ... and the unit's own on-time record counts by its own clock: not overdue
        async with escalation.unit_of_work() as uow:
            counts = {r["unit_code"]: r for r in await store.unit_month_counts(
                uow.conn, at(2026, 11, 1), at(2026, 12, 1), at(2026, 11, 11, 10, 0))}
        assert counts["transport_bureau"]["overdue"] == 0


async def test_an_extension_or_a_pause_moves_the_firings_the_deadline_and_the_warnings_in_one_transaction(
        servers, frozen, js, db):  # noqa: F811 - the fixture
    """A crash after the re-plan and before the commit leaves the rows, the outbox and the deadline as they were."""
    from shared.contracts import events as ev
    frozen.set(at(2026, 11, 2, 10, 0))
    appeal = new_appeal()
    order = f"{appeal}-01"
    async with running(create_escalation, servers, scan_interval_s=0.05) as service:
        await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=RECEIVED,
                                                             occurred_at=at(2026, 11, 2, 9, 30)))
        await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 11, 2, 9, 45)))
        await fact(db, order, "signed_at IS NOT NULL AND handling_due_published IS NOT NULL")
        await wait_for(lambda: db.fetchval("SELECT count(*) = 0 FROM escalation.outbox"), what="relayed")
        before = [tuple(r) for r in await firing_rows(db, order)]
        pause = ev.ClockPause(pause_id=f"{order}:P1", order_id=order, started_at=at(2026, 11, 3, 10),
                              max_working_days=10, reason="等材料")
        base = {"event_id": f"dsp-{uuid.uuid4().hex}", "occurred_at": at(2026, 11, 3, 10), "appeal_id": appeal,
                "order_id": order, "unit_code": "traffic_police", "unit": "交警"}
        events = [(subjects.ORDER_PAUSED, ev.OrderPaused(**base, pause=pause)),
                  (subjects.ORDER_EXTENSION_GRANTED, ev.ExtensionGranted(**base | {"event_id": f"dsp-{uuid.uuid4().hex}"},
                                                                         days=3, total_extension_days=3))]
        ctx = scanner_of(service).ctx

        class Crash(Exception):
            pass

        for subject, event in events:
            with pytest.raises(Crash):
                async with service.unit_of_work() as uow:
                    await use_cases.record_clock_events(
                        uow, ctx, [use_cases.Received(subject, event, event.event_id)], at(2026, 11, 3, 10))
                    # inside the transaction: everything moved together
                    assert await uow.conn.fetchval(
                        "SELECT count(*) FROM firings WHERE order_id = $1 AND cancelled_at IS NOT NULL", order) > 0
                    raise Crash
            assert [tuple(r) for r in await firing_rows(db, order)] == before
            assert await db.fetchval("SELECT count(*) FROM escalation.outbox") == 0
            row = await fact(db, order)
            assert row["handling_due_published"] == DUE and json.loads(row["pauses"]) == []
            assert row["extension_days"] == 0
        # delivered for real: the firings, the published deadline and its event move together
        for subject, event in events:
            await send(js, subject, event)
        row = await fact(db, order, "extension_days = 3 AND pauses <> '[]'::jsonb")
        pending = {r["due_at"] for r in await firing_rows(db, order)
                   if r["clock"] == "handling" and r["fired_at"] is None and r["cancelled_at"] is None}
        assert pending == {row["handling_due"]} == {row["handling_due_published"]}


async def test_after_an_outage_every_step_that_fell_due_fires_once_in_order_with_its_lateness(
        servers, frozen, js, db, nc):  # noqa: F811 - the fixture
    recorder = await StreamRecorder(nc).watch("ct.deadline.>", subjects.APPEAL_ESCALATED)
    try:
        frozen.set(at(2026, 11, 2, 10, 0))
        appeal = new_appeal()
        order = f"{appeal}-01"
        async with running(create_escalation, servers, scan_interval_s=0.05):
            await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=RECEIVED,
                                                                 occurred_at=at(2026, 11, 2, 9, 30)))
            await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 11, 2, 9, 45)))
            await fact(db, order, "signed_at IS NOT NULL AND handling_due IS NOT NULL")
        # escalation is down for three weeks: the whole handling ladder falls due meanwhile
        down_until = at(2026, 11, 20, 9, 0)
        frozen.set(down_until)
        async with running(create_escalation, servers, scan_interval_s=0.05) as service:
            ladder = [("handling", level) for level in
                      ("warning_75", "warning_1d", "overdue", "district_leader", "supervision")]
            await wait_for(lambda: steps(recorder, order) == ladder, what="the ladder fired after the outage")
            await settle(db, service)
        assert steps(recorder, order) == ladder  # once each, lowest first, nothing more after a settle
        rows = {r["level"]: r for r in await firing_rows(db, order) if r["clock"] == "handling"}
        for body in [b for s, b, _ in recorder.messages
                     if s in (subjects.DEADLINE_WARNING, subjects.APPEAL_ESCALATED) and b.get("order_id") == order]:
            row = rows[body["level"]]
            assert dt(body["fire_at"]) == row["fire_at"] and row["fired_at"] == down_until
            assert body["late_seconds"] == int((down_until - row["fire_at"]).total_seconds()) > 0
        fired_order = [body["level"] for body in sorted(
            (b for s, b, _ in recorder.messages if s != subjects.DEADLINE_SET and b.get("order_id") == order),
            key=lambda b: b["_seq"])]
        assert fired_order == sorted(fired_order, key=lambda lvl: rows[lvl]["fire_at"])
    finally:
        await recorder.close()
