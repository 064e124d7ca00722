"""Escalation against the real NATS and PostgreSQL: clocks, the ladder, replicas, restarts, the scanner plan, the report.

Time is driven with ``shared.clock.set_clock``: the service's scanner reads the
same clock, so a step due in three weeks fires as soon as the test moves the
clock past it. Every test uses its own appeal and order ids.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import socket
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from services.escalation import evaluation, store
from services.escalation.__main__ import create_service, scanner_of
from services.escalation.config import context
from services.escalation.domain import AppealStep, OrderFacts, plan_order
from services.notify.__main__ import create_service as create_notify
from shared import clock
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.contracts.events import ClockPause
from shared.db import create_pool, migrate
from shared.district import DEFAULT_PATH as DISTRICT_FILE
from shared.district import district
from tests.support import Recorder, running, wait_for
from tools import report
from tools.sms_sink import LocalSmsSink

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
UNIT = "traffic_police"  # 区公安分局交警大队: liaisons 吴刚, 郑洁; head 王建军
CO_UNIT = "transport_bureau"
# what dispatch snapshots on an order: deadlines and who is told, no ladder fields
DISPATCH_SNAPSHOT = ev.OrderPolicy(deadline_days=5, sign_hours=4, district_leader="leader_liu",
                                   lead_unit="approval_bureau", supervision_office="supervision_office")
MIGRATIONS = Path(__file__).parents[2] / "services" / "escalation" / "migrations"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


class SteppedClock:
    """The clock every part of the process reads (``shared.clock``) while a test runs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def frozen():
    test_clock = SteppedClock(at(2026, 9, 30, 11, 0))
    clock.set_clock(test_clock)
    try:
        yield test_clock
    finally:
        clock.set_clock(None)


@pytest.fixture
async def escalation(servers, frozen):
    """One escalation service; started after the clock is frozen, stopped before it is restored."""
    async with running(create_service, servers, scan_interval_s=0.05) as service:
        yield service


class StreamRecorder(Recorder):
    """A recorder that keeps each message's stream sequence (``_seq``): the order escalation published in."""

    async def _on(self, msg) -> None:
        await super()._on(msg)
        self.messages[-1][1]["_seq"] = msg.metadata.sequence.stream


@pytest.fixture
async def recorder(nc):
    rec = await StreamRecorder(nc).watch("ct.deadline.>", subjects.APPEAL_ESCALATED)
    yield rec
    await rec.close()


# --- events, as dispatch publishes them ---------------------------------------------


def new_appeal() -> str:
    return f"CT-T{uuid.uuid4().hex[:12]}"


def _order(appeal_id: str, order_id: str, occurred_at: datetime, unit_code: str = UNIT) -> dict:
    try:
        name = district().unit(unit_code).name
    except KeyError:
        name = unit_code
    return {"event_id": f"dsp-{uuid.uuid4().hex}", "occurred_at": occurred_at, "appeal_id": appeal_id,
            "source_ref": "hotline:CALL-T", "correlation_id": f"corr-{appeal_id}", "actor": "system",
            "order_id": order_id, "unit_code": unit_code, "unit": name}


def dispatched(appeal_id: str, order_id: str, *, received_at: datetime, occurred_at: datetime,
               deadline_days: int = 5, sign_hours: float = 4, unit_code: str = UNIT, role: str = "lead",
               reopen_count: int = 0) -> ev.OrderDispatched:
    return ev.OrderDispatched(
        **_order(appeal_id, order_id, occurred_at, unit_code), role=role, category="交通出行",
        reasons=["matched 左转车道"], received_at=received_at, deadline_days=deadline_days, sign_hours=sign_hours,
        reopen_count=reopen_count, policy=DISPATCH_SNAPSHOT, summary="东航中心路口左转车道通行不便",
        enterprise_name="四川东航投资有限公司",
    )


def signed(appeal_id: str, order_id: str, occurred_at: datetime, unit_code: str = UNIT) -> ev.OrderSigned:
    return ev.OrderSigned(**_order(appeal_id, order_id, occurred_at, unit_code))


def replied(appeal_id: str, order_id: str, occurred_at: datetime, unit_code: str = UNIT) -> ev.OrderReplied:
    return ev.OrderReplied(**_order(appeal_id, order_id, occurred_at, unit_code), reply="已调整信号灯配时",
                           resolved=True, contact_phone="13800001234")


def extended(appeal_id: str, order_id: str, occurred_at: datetime, total: int) -> ev.ExtensionGranted:
    return ev.ExtensionGranted(**_order(appeal_id, order_id, occurred_at), days=total, total_extension_days=total)


def closed(appeal_id: str, occurred_at: datetime, outcome: str, unit_codes: list[str]) -> ev.AppealClosed:
    return ev.AppealClosed(event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=occurred_at, appeal_id=appeal_id,
                           outcome=outcome, unit_codes=unit_codes)


def reopened(appeal_id: str, new_order_id: str, occurred_at: datetime, unit_code: str) -> ev.AppealReopened:
    return ev.AppealReopened(event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=occurred_at, appeal_id=appeal_id,
                             order_id=new_order_id, unit_code=unit_code, unit=unit_code, reopen_count=1,
                             comment="仍未解决")


async def send(js, subject: str, event, msg_id: str | None = None) -> None:
    await js.publish(subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id or event.event_id})


# --- observing ------------------------------------------------------------------------


def steps(recorder: Recorder, order_id: str) -> list[tuple[str, str]]:
    """(clock, level) of every warning and escalation of an order, in the order they were published."""
    bodies = [body for subject, body, _ in recorder.messages
              if subject in (subjects.DEADLINE_WARNING, subjects.APPEAL_ESCALATED) and body.get("order_id") == order_id]
    return [(body.get("clock", "handling"), body["level"]) for body in sorted(bodies, key=lambda b: b["_seq"])]


def step_events(recorder: Recorder, order_id: str, level: str) -> list[dict]:
    return [body for subject, body, _ in recorder.messages
            if subject in (subjects.DEADLINE_WARNING, subjects.APPEAL_ESCALATED)
            and body.get("order_id") == order_id and body["level"] == level]


async def settle(db, *services) -> None:
    """Two more scan rounds of every service, their events relayed and received."""
    scanners = [scanner_of(s) for s in services]
    marks = [s.rounds for s in scanners]
    await wait_for(lambda: all(s.rounds >= m + 2 for s, m in zip(scanners, marks, strict=True)), what="scan rounds")
    await wait_for(lambda: _outbox_empty(db), what="outbox relayed")
    await asyncio.sleep(0.15)


async def _outbox_empty(db) -> bool:
    return await db.fetchval("SELECT count(*) FROM escalation.outbox") == 0


async def fact(db, order_id: str, condition: str = "true"):
    """Wait until the order's row satisfies ``condition`` (an SQL expression); returns the row."""
    async def check():
        return await db.fetchrow(f"SELECT * FROM escalation.orders WHERE order_id = $1 AND ({condition})", order_id)
    return await wait_for(check, what=f"{order_id}: {condition}")


async def firing_rows(db, order_id: str) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM escalation.firings WHERE order_id = $1 ORDER BY fire_at, firing_id", order_id)


def names(event: dict) -> list[tuple[str, str]]:
    return [(t["role"], t["name"]) for t in event["targets"]]


# --- deadlines ----------------------------------------------------------------------------


async def test_a_dispatched_order_gets_its_deadlines_on_the_working_day_calendar(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0), occurred_at=at(2026, 9, 30, 11, 0)))

    sets = await wait_for(lambda: len(recorder.on(subjects.DEADLINE_SET, order_id=order)) == 2
                          and recorder.on(subjects.DEADLINE_SET, order_id=order), what="two deadlines")
    due = {e["clock"]: e["due_at"] for e in sets}
    # 5 working days from 30 September: the National Day holiday skipped, Saturday 10 October (make-up) counted
    assert due["handling"] == "2026-10-13T17:30:00+08:00"
    # 4 working hours from 11:00: 11:00-12:00 and 13:30-16:30
    assert due["sign_for"] == "2026-09-30T16:30:00+08:00"
    assert {e["unit_code"] for e in sets} == {UNIT} and {e["appeal_id"] for e in sets} == {appeal}

    row = await fact(db, order)
    assert row["handling_due"] == at(2026, 10, 13, 17, 30)
    # dispatch's snapshot carries no ladder fields: the default policy for the category is snapshotted
    assert json.loads(row["policy"]) == {"warning_fraction": 0.75, "warning_days_before": 1, "leader_after_days": 2,
                             "supervision_after_days": 3}
    planned = [(r["clock"], r["level"], r["fire_at"]) for r in await firing_rows(db, order)]
    assert planned == [
        ("sign_for", "overdue", at(2026, 9, 30, 16, 30)),
        ("handling", "warning_75", at(2026, 10, 12, 15, 45)),
        ("handling", "warning_1d", at(2026, 10, 13, 9, 0)),
        ("handling", "overdue", at(2026, 10, 13, 17, 30)),
        ("handling", "district_leader", at(2026, 10, 15, 17, 30)),
        ("handling", "supervision", at(2026, 10, 20, 17, 30)),
    ]


async def test_each_step_of_the_ladder_fires_once_at_its_time(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0), occurred_at=at(2026, 9, 30, 11, 0)))
    await fact(db, order, "handling_due IS NOT NULL")
    walk = [
        ("sign_for", "overdue", at(2026, 9, 30, 16, 30)),
        ("handling", "warning_75", at(2026, 10, 12, 15, 45)),
        ("handling", "warning_1d", at(2026, 10, 13, 9, 0)),
        ("handling", "overdue", at(2026, 10, 13, 17, 30)),
        ("handling", "district_leader", at(2026, 10, 15, 17, 30)),
        ("handling", "supervision", at(2026, 10, 20, 17, 30)),
    ]
    expected: list[tuple[str, str]] = []
    for clock_name, level, fire_at in walk:
        frozen.set(fire_at - timedelta(minutes=1))
        await settle(db, escalation)
        assert steps(recorder, order) == expected, f"{level} fired before its time"
        frozen.set(fire_at + timedelta(minutes=1))
        await wait_for(lambda c=clock_name, lv=level: (c, lv) in steps(recorder, order), what=f"{clock_name} {level}")
        await settle(db, escalation)
        expected.append((clock_name, level))
        assert steps(recorder, order) == expected  # exactly one each, in ladder order

    liaisons = [("liaison", "吴刚"), ("liaison", "郑洁")]
    late_signature = step_events(recorder, order, "overdue")[0]
    assert late_signature["clock"] == "sign_for"
    assert names(late_signature) == [("lead_unit", "孙志刚"), *liaisons]
    assert names(step_events(recorder, order, "warning_75")[0]) == liaisons
    warning = step_events(recorder, order, "warning_1d")[0]
    assert names(warning) == liaisons
    assert warning["due_at"] == "2026-10-13T17:30:00+08:00" and warning["summary"] and warning["reason"]
    overdue = [e for e in step_events(recorder, order, "overdue") if e["clock"] == "handling"][0]
    assert names(overdue) == [("unit_head", "王建军"), ("lead_unit", "孙志刚")]
    assert overdue["overdue_seconds"] == 60
    assert overdue["unit"] == "区公安分局交警大队" and overdue["summary"] == "东航中心路口左转车道通行不便"
    assert "missed" in overdue["reason"] and overdue["due_at"] == "2026-10-13T17:30:00+08:00"
    leader = step_events(recorder, order, "district_leader")[0]
    assert names(leader) == [("district_leader", "刘建国")]
    assert leader["overdue_seconds"] == 2 * 86400 + 60
    notice = step_events(recorder, order, "supervision")[0]
    assert names(notice) == [("supervision_office", "周文斌")]
    assert notice["overdue_seconds"] == 7 * 86400 + 60
    assert {e["appeal_id"] for _, e, _ in [m for m in recorder.messages if m[1].get("order_id") == order]} == {appeal}
    rows = await firing_rows(db, order)
    assert all(r["fired_at"] and r["event_id"] and not r["cancelled_at"] for r in rows)


async def test_signing_stops_the_sign_for_clock_even_when_it_arrives_before_the_dispatch(
        escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    in_order, early_signature = f"{appeal}-01", f"{appeal}-02"
    frozen.set(at(2026, 9, 30, 12, 0))
    await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, in_order, received_at=at(2026, 9, 30, 10, 0),
                                                         occurred_at=at(2026, 9, 30, 11, 0)))
    await fact(db, in_order, "sign_due IS NOT NULL")
    await send(js, subjects.ORDER_SIGNED, signed(appeal, in_order, at(2026, 9, 30, 12, 0)))
    # the other order's signature overtakes its dispatch
    await send(js, subjects.ORDER_SIGNED, signed(appeal, early_signature, at(2026, 9, 30, 11, 30), CO_UNIT))
    await fact(db, early_signature, "signed_at IS NOT NULL")
    await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, early_signature, received_at=at(2026, 9, 30, 10, 0),
                                                         occurred_at=at(2026, 9, 30, 11, 0), unit_code=CO_UNIT,
                                                         role="co"))
    await fact(db, in_order, "signed_at IS NOT NULL")
    await fact(db, early_signature, "handling_due IS NOT NULL")

    frozen.set(at(2026, 9, 30, 17, 0))  # past both sign-for deadlines (16:30)
    await settle(db, escalation)
    assert steps(recorder, in_order) == [] and steps(recorder, early_signature) == []
    sign_steps = [r for r in await firing_rows(db, in_order) if r["clock"] == "sign_for"]
    assert len(sign_steps) == 1 and sign_steps[0]["cancelled_at"] and not sign_steps[0]["fired_at"]
    # signed before dispatch was known: the sign-for step was never planned, nor its deadline published
    assert [r for r in await firing_rows(db, early_signature) if r["clock"] == "sign_for"] == []
    assert [e["clock"] for e in recorder.on(subjects.DEADLINE_SET, order_id=early_signature)] == ["handling"]


async def test_replying_stops_the_handling_ladder_and_closing_stops_every_order_of_the_appeal(
        escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    lead, co = f"{appeal}-01", f"{appeal}-02"
    for order, unit, role in ((lead, UNIT, "lead"), (co, CO_UNIT, "co")):
        await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0),
                                                             occurred_at=at(2026, 9, 30, 11, 0), unit_code=unit,
                                                             role=role))
        await fact(db, order, "handling_due IS NOT NULL")
        await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 9, 30, 11, 30), unit))
        await fact(db, order, "signed_at IS NOT NULL")

    frozen.set(at(2026, 10, 12, 15, 46))  # just past the 75 % warning
    await wait_for(lambda: steps(recorder, lead) == [("handling", "warning_75")]
                   and steps(recorder, co) == [("handling", "warning_75")], what="75 % warnings")
    await send(js, subjects.ORDER_REPLIED, replied(appeal, lead, at(2026, 10, 12, 16, 0)))
    await fact(db, lead, "replied_at IS NOT NULL")
    frozen.set(at(2026, 10, 13, 9, 1))  # the co-handling unit gets its one-day warning; the lead unit replied
    await wait_for(lambda: ("handling", "warning_1d") in steps(recorder, co), what="co unit's one-day warning")
    await send(js, subjects.APPEAL_CLOSED, closed(appeal, at(2026, 10, 13, 10, 0), "satisfied", [UNIT, CO_UNIT]))

    async def co_cancelled():
        return all(r["fired_at"] or r["cancelled_at"] for r in await firing_rows(db, co))
    await wait_for(co_cancelled, what="the closure cancelled the co-handling order's steps")
    frozen.set(at(2026, 10, 21, 9, 0))  # past every step
    await settle(db, escalation)
    assert steps(recorder, lead) == [("handling", "warning_75")]
    assert steps(recorder, co) == [("handling", "warning_75"), ("handling", "warning_1d")]
    for order, fired in ((lead, {"warning_75"}), (co, {"warning_75", "warning_1d"})):
        rows = [r for r in await firing_rows(db, order) if r["clock"] == "handling"]
        assert {r["level"] for r in rows if r["fired_at"]} == fired
        assert all(r["cancelled_at"] for r in rows if not r["fired_at"])


async def test_an_extension_moves_the_handling_deadline_and_its_ladder(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0), occurred_at=at(2026, 9, 30, 11, 0)))
    await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 9, 30, 11, 30)))
    await fact(db, order, "signed_at IS NOT NULL AND handling_due IS NOT NULL")
    frozen.set(at(2026, 10, 9, 10, 0))
    await send(js, subjects.ORDER_EXTENSION_GRANTED, extended(appeal, order, at(2026, 10, 9, 10, 0), total=3))

    moved = await wait_for(lambda: [e for e in recorder.on(subjects.DEADLINE_SET, order_id=order, clock="handling")
                                    if e["due_at"] == "2026-10-16T17:30:00+08:00"], what="the moved deadline")
    assert len(moved) == 1
    frozen.set(at(2026, 10, 14, 9, 0))  # past the old deadline (13 October 17:30)
    await settle(db, escalation)
    assert not step_events(recorder, order, "overdue")
    old = [r for r in await firing_rows(db, order) if r["due_at"] == at(2026, 10, 13, 17, 30)]
    assert old and all(r["cancelled_at"] and not r["fired_at"] for r in old)

    frozen.set(at(2026, 10, 16, 17, 31))
    overdue = await wait_for(lambda: step_events(recorder, order, "overdue"), what="overdue on the new deadline")
    await settle(db, escalation)
    assert len(step_events(recorder, order, "overdue")) == 1
    assert overdue[0]["due_at"] == "2026-10-16T17:30:00+08:00" and overdue[0]["overdue_seconds"] == 60


async def test_a_backlog_appeal_escalates_through_every_past_level_as_soon_as_it_is_dispatched(
        escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    frozen.set(at(2026, 6, 1, 10, 0))
    # received in March, deadline 9 March: dispatched only now
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2026, 3, 2, 10, 0), occurred_at=at(2026, 6, 1, 10, 0)))
    # the warnings fell before the order existed: a backlog order starts at overdue
    ladder = [("handling", level) for level in ("overdue", "district_leader", "supervision")]
    await wait_for(lambda: len(steps(recorder, order)) >= 3, what="the whole ladder")
    await settle(db, escalation)
    assert steps(recorder, order) == ladder  # lowest first, each once; the sign-for clock runs from now
    assert step_events(recorder, order, "supervision")[0]["due_at"] == "2026-03-09T17:30:00+08:00"


# --- once and only once ------------------------------------------------------------------


async def test_redelivered_and_republished_events_change_nothing_twice(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    dispatch = dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0), occurred_at=at(2026, 9, 30, 11, 0))
    await send(js, subjects.ORDER_DISPATCHED, dispatch)
    await send(js, subjects.ORDER_DISPATCHED, dispatch)  # same Nats-Msg-Id: dropped by JetStream
    await send(js, subjects.ORDER_DISPATCHED, dispatch, msg_id=f"retry-{uuid.uuid4().hex}")  # delivered again
    await wait_for(lambda: len(recorder.on(subjects.DEADLINE_SET, order_id=order)) == 2, what="deadlines")
    extension = extended(appeal, order, at(2026, 9, 30, 11, 5), total=3)
    request = ev.EscalationRequested(**_order(appeal, order, at(2026, 9, 30, 11, 10)), reason="涉及多个部门，需区领导协调")
    another_request = ev.EscalationRequested(**_order(appeal, order, at(2026, 9, 30, 11, 20)), reason="再次申请")
    for event, subject in ((extension, subjects.ORDER_EXTENSION_GRANTED), (request, subjects.ORDER_ESCALATION_REQUESTED)):
        await send(js, subject, event)
        await send(js, subject, event, msg_id=f"retry-{uuid.uuid4().hex}")
    await send(js, subjects.ORDER_ESCALATION_REQUESTED, another_request)

    await wait_for(lambda: step_events(recorder, order, "difficult"), what="difficult")
    await fact(db, order, "extension_days = 3")
    await wait_for(lambda: _handled(db, another_request.event_id), what="the second request handled")
    await settle(db, escalation)
    sets = Counter((e["clock"], e["due_at"]) for e in recorder.on(subjects.DEADLINE_SET, order_id=order))
    assert sets == {("sign_for", "2026-09-30T16:30:00+08:00"): 1, ("handling", "2026-10-13T17:30:00+08:00"): 1,
                    ("handling", "2026-10-16T17:30:00+08:00"): 1}
    assert len(step_events(recorder, order, "difficult")) == 1  # once per order
    keys = [dispatch.event_id, extension.event_id, request.event_id, another_request.event_id]
    assert await db.fetchval("SELECT count(*) FROM escalation.inbox WHERE key = ANY($1::text[])", keys) == 4
    assert await db.fetchval("SELECT count(*) FROM escalation.firings WHERE order_id = $1 AND level = 'difficult'",
                             order) == 1


async def _handled(db, key: str) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM escalation.inbox WHERE key = $1", key))


async def test_a_units_escalation_reaches_the_district_leader_at_once(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0), occurred_at=at(2026, 9, 30, 11, 0)))
    await send(js, subjects.ORDER_ESCALATION_REQUESTED,
               ev.EscalationRequested(**_order(appeal, order, at(2026, 9, 30, 11, 0)), reason="涉及规划调整，需区领导协调"))
    event = (await wait_for(lambda: step_events(recorder, order, "difficult"), what="difficult"))[0]
    assert names(event) == [("district_leader", "刘建国"), ("lead_unit", "孙志刚")]
    assert "涉及规划调整" in event["reason"]
    assert event["summary"] == "东航中心路口左转车道通行不便" and event["overdue_seconds"] == 0
    assert event["due_at"] in (None, "2026-10-13T17:30:00+08:00")


async def test_events_of_an_order_in_any_order_give_the_same_ladder(escalation, frozen, js, db, recorder):
    appeal = new_appeal()
    forward, backward = f"{appeal}-01", f"{appeal}-02"

    def story(order: str) -> list[tuple[str, object]]:
        return [
            (subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0),
                                                   occurred_at=at(2026, 9, 30, 11, 0))),
            (subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 9, 30, 11, 30))),
            (subjects.ORDER_EXTENSION_GRANTED, extended(appeal, order, at(2026, 10, 9, 10, 0), total=3)),
            # after the 75 % and the one-day warnings of the moved deadline (16 October)
            (subjects.ORDER_REPLIED, replied(appeal, order, at(2026, 10, 16, 10, 0))),
        ]

    for _order, events in ((forward, story(forward)), (backward, list(reversed(story(backward))))):
        for subject, event in events:
            await send(js, subject, event)
            await wait_for(lambda e=event: _handled(db, e.event_id), what=f"{subject} handled")
    frozen.set(at(2026, 10, 21, 9, 0))
    await settle(db, escalation)
    assert steps(recorder, forward) == steps(recorder, backward) == [("handling", "warning_75"), ("handling", "warning_1d")]
    for order in (forward, backward):
        fired = [(r["level"], r["due_at"]) for r in await firing_rows(db, order) if r["fired_at"]]
        assert fired == [("warning_75", at(2026, 10, 16, 17, 30)), ("warning_1d", at(2026, 10, 16, 17, 30))]
        assert not [r for r in await firing_rows(db, order) if not r["fired_at"] and not r["cancelled_at"]]


# --- replicas and restarts ------------------------------------------------------------


async def _plan_backlog(js, db, count: int) -> list[str]:
    """``count`` orders received and dispatched on 2 March 2026, unsigned; returns their ids once planned."""
    orders = []
    for _ in range(count):
        appeal = new_appeal()
        order = f"{appeal}-01"
        orders.append(order)
        await send(js, subjects.ORDER_DISPATCHED,
                   dispatched(appeal, order, received_at=at(2026, 3, 2, 10, 0), occurred_at=at(2026, 3, 2, 11, 0)))

    async def planned():
        n = await db.fetchval("SELECT count(*) FROM escalation.firings WHERE order_id = ANY($1::text[])", orders)
        return n == 6 * count
    await wait_for(planned, what="ladders planned")
    return orders


async def test_two_replicas_share_the_due_steps_with_no_duplicates_and_none_lost(servers, frozen, js, db, recorder):
    frozen.set(at(2026, 3, 2, 12, 0))
    async with running(create_service, servers, scan_interval_s=0.05) as a, \
            running(create_service, servers, scan_interval_s=0.05) as b:
        for service in (a, b):
            scanner_of(service).batch = 5  # small claims, so the two replicas interleave
        orders = await _plan_backlog(js, db, 30)
        frozen.set(at(2026, 6, 1, 10, 0))  # 6 steps of each order fall due at once: 180
        await wait_for(lambda: sum(len(steps(recorder, o)) for o in orders) >= 180, timeout=20, what="180 steps")
        await settle(db, a, b)
        replicas = {scanner_of(a).replica, scanner_of(b).replica}
    fired = Counter((o, step) for o in orders for step in steps(recorder, o))
    assert len(fired) == 180 and set(fired.values()) == {1}
    rows = await db.fetch("SELECT fired_by, count(*) AS n FROM escalation.firings WHERE order_id = ANY($1::text[])"
                          " AND fired_at IS NOT NULL GROUP BY fired_by", orders)
    assert sum(r["n"] for r in rows) == 180
    # both replicas took part: 36 claims of 5 last longer than one scan period (50 ms)
    assert {r["fired_by"] for r in rows} == replicas


async def test_a_replica_dying_with_claimed_steps_loses_none_and_repeats_none(escalation, servers, frozen, js, db,
                                                                               recorder):
    frozen.set(at(2026, 3, 2, 12, 0))
    held, free = await _plan_backlog(js, db, 2)
    dying = await asyncpg.connect(servers["DATABASE_URL"])
    try:
        tx = dying.transaction()
        await tx.start()
        # another replica claimed this order's steps and has not committed yet
        claimed = await dying.fetch("SELECT firing_id FROM escalation.firings WHERE order_id = $1"
                                    " AND fired_at IS NULL AND cancelled_at IS NULL FOR UPDATE SKIP LOCKED", held)
        assert len(claimed) == 6
        frozen.set(at(2026, 6, 1, 10, 0))
        await wait_for(lambda: len(steps(recorder, free)) == 6, what="the other order's steps")
        await settle(db, escalation)
        assert steps(recorder, held) == []  # skipped, not waited for
        await tx.rollback()  # the replica dies: its claim is released, nothing was published
    finally:
        await dying.close()
    await wait_for(lambda: len(steps(recorder, held)) == 6, what="the released steps")
    await settle(db, escalation)
    for order in (held, free):
        assert Counter(steps(recorder, order)) == Counter(
            [("sign_for", "overdue")] + [("handling", lvl) for lvl in
                                         ("warning_75", "warning_1d", "overdue", "district_leader", "supervision")])


async def test_a_restart_neither_loses_nor_repeats_a_step(servers, frozen, js, db, recorder):
    appeal = new_appeal()
    order, late = f"{appeal}-01", f"{appeal}-02"
    async with running(create_service, servers, scan_interval_s=0.05):
        await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0),
                                                             occurred_at=at(2026, 9, 30, 11, 0)))
        await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 9, 30, 11, 30)))
        await fact(db, order, "signed_at IS NOT NULL AND handling_due IS NOT NULL")
    # while the service is down: time passes and another order is dispatched (it waits in JetStream)
    frozen.set(at(2026, 10, 13, 18, 0))
    await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, late, received_at=at(2026, 9, 30, 10, 0),
                                                         occurred_at=at(2026, 10, 13, 18, 0), unit_code=CO_UNIT))
    due_by_now = [("handling", "warning_75"), ("handling", "warning_1d"), ("handling", "overdue")]
    async with running(create_service, servers, scan_interval_s=0.05) as service:
        await wait_for(lambda: steps(recorder, order) == due_by_now, what="the steps due while down")
        await wait_for(lambda: len(steps(recorder, late)) == 1, what="the order dispatched while down")
        await settle(db, service)
    async with running(create_service, servers, scan_interval_s=0.05) as service:
        await settle(db, service)
    assert steps(recorder, order) == due_by_now
    assert steps(recorder, late) == [("handling", "overdue")]  # dispatched after its warnings were due


# --- the batch's writes ----------------------------------------------------------------------


async def test_a_batchs_orders_and_steps_are_written_in_one_statement_each_and_read_back_as_they_were(servers):
    """``save_orders`` / ``add_firings`` over arrays: every column round-trips (jsonb policy and pauses, a NULL
    policy, times), a second write of an order replaces it, a step written twice is stored once."""
    await migrate(servers["DATABASE_URL"], "escalation", MIGRATIONS)
    pool = await create_pool(servers["DATABASE_URL"], "escalation", size=1)
    cal = context().calendar
    tag = f"batch-{uuid.uuid4().hex[:8]}"
    received = at(2026, 9, 30, 10, 0)
    pause = ClockPause(pause_id=f"{tag}-p", order_id=f"{tag}-1", started_at=at(2026, 10, 9, 10), ended_at=None,
                       max_working_days=5, reason="等待企业补充材料")
    full = OrderFacts(order_id=f"{tag}-1", appeal_id=tag, unit_code=UNIT, unit="区公安分局交警大队", role="lead",
                      category="交通出行", urgent=True, summary="路口 \"左转\" 车道", source_ref="hotline:1",
                      correlation_id="c", received_at=received, dispatched_at=received + timedelta(minutes=5),
                      deadline_days=5, sign_hours=4.5, policy={"warning_fraction": 0.5, "leader_after_days": 1},
                      extension_days=3, signed_at=at(2026, 9, 30, 11), replaces_order_id=f"{tag}-0", pauses=(pause,))
    early = OrderFacts(order_id=f"{tag}-2", appeal_id=tag, unit_code=UNIT, signed_at=at(2026, 9, 30, 12))  # no dispatch
    plan = plan_order(full, cal)
    published = {"sign_for": plan.sign_due, "handling": plan.handling_due, "unit": plan.unit_due}
    try:
        async with pool.acquire() as conn, conn.transaction():
            await store.save_orders(conn, [(early, plan_order(early, cal), {}), (full, plan, published)])
            await store.add_firings(conn, [(full, step) for step in plan.steps] * 2, at(2026, 9, 30, 11))
            assert await store.load_orders(conn, [full.order_id, early.order_id]) == {
                full.order_id: (full, published),
                early.order_id: (early, {"sign_for": None, "handling": None, "unit": None})}
            assert await conn.fetchval("SELECT policy IS NULL FROM orders WHERE order_id = $1", early.order_id)
            states = await store.firing_states(conn, [full.order_id])
            assert states == {full.order_id: {step.key: "pending" for step in plan.steps}}
            rows = await conn.fetch("SELECT step_key, clock, level, due_at, fire_at FROM firings WHERE order_id = $1"
                                    " ORDER BY firing_id", full.order_id)
            assert [tuple(r) for r in rows] == [(f.key, f.clock, f.level, f.due_at, f.fire_at) for f in plan.steps]

            later = dataclasses.replace(full, pauses=(), extension_days=4, policy=None)
            await store.save_orders(conn, [(later, plan, {})])
            assert (await store.load_orders(conn, [full.order_id]))[full.order_id] == (
                later, {"sign_for": None, "handling": None, "unit": None})
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM firings WHERE appeal_id = $1", tag)
            await conn.execute("DELETE FROM orders WHERE appeal_id = $1", tag)
        await pool.close()


async def test_a_batchs_lookups_probe_an_index_per_key_even_on_a_table_grown_since_its_statistics(servers):
    """The lookups of a batch (``shared.db.each_key``) on tables that grew from empty since their plans were cached:
    one index probe per key, where ``column = ANY($1)`` reads the whole table (PostgreSQL 16's generic plan);
    a step cancelled or fired is found by its unique key, not by walking the pending steps."""
    await migrate(servers["DATABASE_URL"], "escalation", MIGRATIONS)
    schema = f"stale_{uuid.uuid4().hex[:8]}"
    lookups = {"firings": store._FIRING_STATES, "orders": store._LOAD_ORDERS, "orders_by_appeal": store._ORDERS_OF_APPEALS,
               "closures": store._CLOSURES_OF}
    keys = "ARRAY[" + ", ".join(f"'k-{i}'" for i in range(190)) + "]::text[]"
    db = await asyncpg.connect(servers["DATABASE_URL"])  # its own: PREPARE, search_path and DEALLOCATE stay on it
    await db.execute(f"CREATE SCHEMA {schema}")
    try:
        for table in ("firings", "orders", "closures"):
            await db.execute(f"CREATE TABLE {schema}.{table} (LIKE escalation.{table} INCLUDING ALL)")
        await db.execute(f"SET search_path TO {schema}")
        statements = {**lookups, "by_any": "SELECT order_id FROM firings WHERE order_id = ANY($1::text[])"}
        for name, sql in statements.items():
            await db.execute(f"PREPARE {name} (text[]) AS {sql}")
            for _ in range(6):  # past PostgreSQL's five custom plans: the generic plan, made on empty tables, is kept
                await db.execute(f"EXECUTE {name} ({keys})")
        updates = {"cancel_one": ("(timestamptz, text, text)", store.CANCEL_FIRING, "(now(), 'o-7', 's42')",
                                  "Index Cond: ((order_id = $2) AND (step_key = $3))"),
                   "fire_one": ("(timestamptz, text, bigint, text)", store.MARK_FIRED, "(now(), 'r', 5, 'e')",
                                "Index Cond: (firing_id = $3)")}
        for name, (types, sql, args, _) in updates.items():
            await db.execute(f"PREPARE {name} {types} AS {sql}")
            for _ in range(6):
                await db.execute(f"EXECUTE {name} {args}")
        start = at(2099, 1, 1)
        await db.copy_records_to_table("firings", schema_name=schema, records=[
            (f"o-{i // 6}", f"a-{i // 6}", "u", "handling", "overdue", f"s{i}", start, start, start) for i in range(30_000)],
            columns=["order_id", "appeal_id", "unit_code", "clock", "level", "step_key", "due_at", "fire_at", "planned_at"])
        await db.copy_records_to_table("orders", schema_name=schema, records=[
            (f"o-{i}", f"a-{i}", "u") for i in range(5_000)], columns=["order_id", "appeal_id", "unit_code"])
        await db.copy_records_to_table("closures", schema_name=schema, records=[
            (f"e-{i}", f"a-{i}", "closed", start) for i in range(5_000)],
            columns=["event_id", "appeal_id", "kind", "closed_at"])
        for name in statements:
            plan = "\n".join(r[0] for r in await db.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE {name} ({keys})"))
            if name == "by_any":
                assert "Seq Scan on firings" in plan, plan  # the statistics of the empty table decided
            else:
                assert "Seq Scan" not in plan and "loops=190" in plan and "Index" in plan, plan
        for name, (_, _, args, scan) in updates.items():  # (the updates run on the scratch schema, dropped below)
            plan = "\n".join(r[0] for r in await db.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) EXECUTE {name} {args}"))
            assert scan in plan and "Seq Scan" not in plan and "firings_pending" not in plan, plan
    finally:
        await db.execute("DEALLOCATE ALL; RESET search_path")
        await db.execute(f"DROP SCHEMA {schema} CASCADE")
        await db.close()


# --- the scanner's query plan ---------------------------------------------------------------


async def test_the_scanner_query_reads_only_due_rows_through_the_partial_index(servers, db):
    """50 000 steps waiting in the future; a claim must not read them. The plan PostgreSQL 16 gives::

        Limit (actual rows=0 loops=1)
          Buffers: shared hit=2
          ->  LockRows (actual rows=0 loops=1)
                Buffers: shared hit=2
                ->  Index Scan using firings_pending on firings (actual rows=0 loops=1)
                      Index Cond: (fire_at <= '2025-12-31 16:00:00+00'::timestamp with time zone)
                      Filter: ((fired_at IS NULL) AND (cancelled_at IS NULL))
                      Buffers: shared hit=2

    (the Filter is the partial index's predicate, rechecked for rows that get locked).
    """
    await migrate(servers["DATABASE_URL"], "escalation", MIGRATIONS)
    tag = f"explain-{uuid.uuid4().hex[:8]}"
    start = at(2099, 1, 1)
    rows = [(f"{tag}-{i}", tag, "explain_unit", "handling", "overdue", f"k{i}", start + timedelta(minutes=i),
             start + timedelta(minutes=i), start) for i in range(50_000)]
    await db.copy_records_to_table(
        "firings", schema_name="escalation", records=rows,
        columns=["order_id", "appeal_id", "unit_code", "clock", "level", "step_key", "due_at", "fire_at", "planned_at"])
    try:
        await db.execute("ANALYZE escalation.firings")
        async with db.transaction():
            await db.execute("SET LOCAL search_path TO escalation")
            plan = "\n".join(r[0] for r in await db.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) " + store.CLAIM_DUE_FIRINGS,
                at(2026, 1, 1), 500))
        assert "Index Scan using firings_pending on firings" in plan, plan
        assert "Index Cond: (fire_at <=" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
        # a handful of index pages, not the thousands of pages the 50 000 rows fill
        execution = plan.split("Planning:")[0]
        buffers = [int(n) for n in re.findall(r"Buffers: shared hit=(\d+)", execution)]
        assert buffers and max(buffers) <= 10, plan
    finally:
        await db.execute("DELETE FROM escalation.firings WHERE appeal_id = $1", tag)


# --- the monthly evaluation ------------------------------------------------------------------


async def test_the_monthly_report_counts_rates_and_ranks_the_units(escalation, servers, frozen, js, db, recorder,
                                                                     capsys, monkeypatch):
    unit_a, unit_b = f"unit_a{uuid.uuid4().hex[:8]}", f"unit_b{uuid.uuid4().hex[:8]}"
    frozen.set(at(2026, 11, 2, 8, 0))
    a1, a2, a3, b1 = new_appeal(), new_appeal(), new_appeal(), new_appeal()
    o1, o2, o3, o4, o5 = f"{a1}-01", f"{a2}-01", f"{a3}-01", f"{b1}-01", f"{b1}-02"
    story = [
        # unit A: o1 signed and replied in time, satisfied; o2 signed late, replied late, basically satisfied;
        # o3 never answered
        (subjects.ORDER_DISPATCHED, dispatched(a1, o1, received_at=at(2026, 11, 2, 9), occurred_at=at(2026, 11, 2, 9), unit_code=unit_a)),
        (subjects.ORDER_SIGNED, signed(a1, o1, at(2026, 11, 2, 10), unit_a)),
        (subjects.ORDER_REPLIED, replied(a1, o1, at(2026, 11, 5, 10), unit_a)),
        (subjects.APPEAL_CLOSED, closed(a1, at(2026, 11, 6, 10), "satisfied", [unit_a])),
        (subjects.ORDER_DISPATCHED, dispatched(a2, o2, received_at=at(2026, 11, 2, 9), occurred_at=at(2026, 11, 2, 9), unit_code=unit_a)),
        (subjects.ORDER_SIGNED, signed(a2, o2, at(2026, 11, 3, 10), unit_a)),
        (subjects.ORDER_REPLIED, replied(a2, o2, at(2026, 11, 12, 10), unit_a)),
        (subjects.APPEAL_CLOSED, closed(a2, at(2026, 11, 13, 10), "basically_satisfied", [unit_a])),
        (subjects.ORDER_DISPATCHED, dispatched(a3, o3, received_at=at(2026, 11, 3, 9), occurred_at=at(2026, 11, 3, 9), unit_code=unit_a)),
        # unit B: o4 replied in time but rated unsatisfied: reopened as o5, counted from the reopening
        (subjects.ORDER_DISPATCHED, dispatched(b1, o4, received_at=at(2026, 11, 4, 9), occurred_at=at(2026, 11, 4, 9), unit_code=unit_b)),
        (subjects.ORDER_SIGNED, signed(b1, o4, at(2026, 11, 4, 9, 30), unit_b)),
        (subjects.ORDER_REPLIED, replied(b1, o4, at(2026, 11, 6, 10), unit_b)),
        (subjects.APPEAL_REOPENED, reopened(b1, o5, at(2026, 11, 9, 9), unit_b)),
        (subjects.ORDER_DISPATCHED, dispatched(b1, o5, received_at=at(2026, 11, 4, 9), occurred_at=at(2026, 11, 9, 9),
                                               unit_code=unit_b, reopen_count=1)),
        (subjects.ORDER_SIGNED, signed(b1, o5, at(2026, 11, 9, 10), unit_b)),
        (subjects.ORDER_REPLIED, replied(b1, o5, at(2026, 11, 12, 10), unit_b)),
        (subjects.APPEAL_CLOSED, closed(b1, at(2026, 11, 13, 10), "satisfied", [unit_b])),
    ]
    for subject, event in story:
        await send(js, subject, event)
    await wait_for(lambda: _all_handled(db, [e.event_id for _, e in story]), what="the month's events")
    assert (await fact(db, o5))["handling_due"] == at(2026, 11, 16, 17, 30)  # 5 working days from the reopening

    frozen.set(at(2026, 11, 20, 12, 0))  # o3's supervision step (17 November) fires: a public notice
    await wait_for(lambda: step_events(recorder, o3, "supervision"), what="o3's notice")
    await settle(db, escalation)

    transport = httpx.ASGITransport(app=escalation.http)
    async with httpx.AsyncClient(transport=transport, base_url="http://escalation") as client:
        response = await client.get("/report", params={"month": "2026-11", "format": "json"})
        assert response.status_code == 200
        document = response.json()
        csv_answer = await client.get("/report", params={"month": "2026-11", "format": "csv"})
        csv_text = csv_answer.content.decode("utf-8")
        xlsx = await client.get("/report", params={"month": "2026-11", "format": "xlsx", "lang": "en"})
        png = await client.get("/report", params={"month": "2026-11", "format": "png"})
        table = (await client.get("/report", params={"month": "2026-11", "format": "table"})).text
        bad_month = await client.get("/report", params={"month": "2026-13"})
        assert bad_month.status_code == 422
        assert bad_month.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in bad_month.json()["errors"]] == ["month"]
        bad_format = await client.get("/report", params={"month": "2026-11", "format": "xml", "lang": "fr"})
        assert bad_format.status_code == 422
        assert sorted(e["field"] for e in bad_format.json()["errors"]) == ["format", "lang"]
    units = {u["unit_code"]: u for u in document["units"]}
    a, b = units[unit_a], units[unit_b]
    assert {k: a[k] for k in ("received", "signed_on_time", "due", "closed", "closed_on_time", "rated",
                              "satisfied_or_basically", "returned", "reopened", "overdue", "noticed")} == {
        "received": 3, "signed_on_time": 1, "due": 3, "closed": 2, "closed_on_time": 1, "rated": 2,
        "satisfied_or_basically": 2, "returned": 0, "reopened": 0, "overdue": 2, "noticed": 1}
    assert {k: b[k] for k in ("received", "signed_on_time", "due", "closed", "closed_on_time", "rated",
                              "satisfied_or_basically", "reopened", "overdue", "noticed")} == {
        "received": 2, "signed_on_time": 2, "due": 2, "closed": 2, "closed_on_time": 2, "rated": 2,
        "satisfied_or_basically": 1, "reopened": 1, "overdue": 0, "noticed": 0}
    assert a["closure_rate"] == pytest.approx(2 / 3) and a["satisfaction_rate"] == 1.0
    assert b["satisfaction_rate"] == 0.5 and b["reopen_rate"] == 0.5
    assert a["score"] == pytest.approx(round(100 * (0.35 * 2 / 3 + 0.35 + 0.2 / 3 + 0.1 / 3) - 2, 2))
    assert b["score"] == pytest.approx(100 * (0.35 + 0.35 * 0.5 + 0.2 + 0.1) - 10 * 0.5)
    # fewer than min_orders (5) orders: listed, not ranked
    assert a["rank"] is None and "fewer than 5" in a["note"]
    assert "score = 100" in document["formula"] and document["weights"]["closure"] == 0.35
    assert document["min_orders"] == 5
    # the CSV for Excel: BOM, one plain header row (Chinese), CRLF; the formula stays in JSON, the table, the xlsx
    assert csv_answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert csv_text.startswith("\ufeff排名,单位代码,单位,得分,") and "#" not in csv_text and unit_a in csv_text
    assert xlsx.headers["content-type"] == evaluation.MEDIA_TYPES["xlsx"] and xlsx.content[:2] == b"PK"
    assert 'filename="units-2026-11.xlsx"' in xlsx.headers["content-disposition"]
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert unit_b in table and "score = 100" in table

    # the same from the command line (coffeetime report --month 2026-11 --format json)
    monkeypatch.setenv("DATABASE_URL", servers["DATABASE_URL"])
    code = await asyncio.to_thread(report.main, argparse.Namespace(month="2026-11", format="json"))
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert {u["unit_code"]: u["score"] for u in printed["units"]}[unit_b] == b["score"]

    # the gauges
    await evaluation.refresh_gauges(escalation.pool, context())
    assert REGISTRY.get_sample_value("coffeetime_unit_closure_rate", {"unit_code": unit_a}) == pytest.approx(2 / 3)
    assert REGISTRY.get_sample_value("coffeetime_unit_satisfaction_rate", {"unit_code": unit_b}) == 0.5
    assert REGISTRY.get_sample_value("coffeetime_unit_on_time_rate", {"unit_code": unit_b}) == 1.0
    assert REGISTRY.get_sample_value("coffeetime_open_orders", {"unit_code": unit_a}) == 1
    assert REGISTRY.get_sample_value("coffeetime_overdue_orders", {"unit_code": unit_a}) == 1
    assert REGISTRY.get_sample_value("coffeetime_escalations_total", {"level": "supervision"}) >= 1


async def _all_handled(db, keys: list[str]) -> bool:
    return await db.fetchval("SELECT count(*) FROM escalation.inbox WHERE key = ANY($1::text[])", keys) == len(keys)


async def test_the_supervision_office_gets_one_monthly_list_of_the_months_public_notices(escalation, frozen, js,
                                                                                          recorder):
    from services.escalation.evaluation import publish_monthly_list

    # a month no other test touches
    appeal = new_appeal()
    order = f"{appeal}-01"
    frozen.set(at(2031, 3, 20, 10, 0))
    await send(js, subjects.ORDER_DISPATCHED,
               dispatched(appeal, order, received_at=at(2031, 2, 3, 10, 0), occurred_at=at(2031, 3, 20, 10, 0)))
    await wait_for(lambda: step_events(recorder, order, "supervision"), what="the public notice")

    frozen.set(at(2031, 4, 1, 9, 0))
    await publish_monthly_list(escalation, "2031-03")
    assert await publish_monthly_list(escalation, "2031-03") is False  # once per month, whatever the replica
    lists = await wait_for(lambda: [b for b in recorder.on(subjects.DEADLINE_MONTHLY_LIST) if b["month"] == "2031-03"],
                           what="the monthly list")
    assert len(lists) == 1
    # (orders of earlier tests in the shared stream may be noticed in that month too)
    mine = [i for i in lists[0]["items"] if i["order_id"] == order]
    assert len(mine) == 1 and mine[0]["level"] == "supervision" and mine[0]["unit_code"] == UNIT


# --- co-handling orders: the district leader and the supervision office hear once per appeal -----------------


LEADER_PHONE = "13700000001"  # 刘建国, who coordinates 交通出行


def appeal_escalations(recorder: Recorder, appeal_id: str, level: str) -> list[dict]:
    return [body for subject, body, _ in recorder.messages
            if subject == subjects.APPEAL_ESCALATED and body["appeal_id"] == appeal_id and body["level"] == level]


async def co_handled(js, db, appeal: str, *, co_deadline_days: int) -> tuple[str, str]:
    """A lead order (due 13 October 17:30) and a co-handling one, both signed at once; returns their ids."""
    lead, co = f"{appeal}-01", f"{appeal}-02"
    for order, unit, role, days in ((lead, UNIT, "lead", 5), (co, CO_UNIT, "co", co_deadline_days)):
        await send(js, subjects.ORDER_DISPATCHED, dispatched(appeal, order, received_at=at(2026, 9, 30, 10, 0),
                                                             occurred_at=at(2026, 9, 30, 11, 0), unit_code=unit,
                                                             role=role, deadline_days=days))
        await send(js, subjects.ORDER_SIGNED, signed(appeal, order, at(2026, 9, 30, 11, 30), unit))
    for order in (lead, co):
        await fact(db, order, "signed_at IS NOT NULL AND handling_due IS NOT NULL")
    return lead, co


class Mailbox:
    """An aiosmtpd handler keeping the e-mails it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ARG002 - aiosmtpd's signature
        self.messages.append(envelope.original_content)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def notify_sinks(tmp_path):
    """An SMS gateway and group-robot endpoint, an SMTP server, and a district file whose robots post to the sink."""
    async with LocalSmsSink() as sink:
        raw = yaml.safe_load(DISTRICT_FILE.read_text(encoding="utf-8"))
        for unit in raw["units"]:
            if unit.get("wecom_webhook"):
                unit["wecom_webhook"] = sink.webhook_url(unit["unit_code"])
        district_file = tmp_path / "district.yaml"
        district_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        port = free_port()
        controller = Controller(Mailbox(), hostname="127.0.0.1", port=port, ready_timeout=10.0)
        controller.start()
        try:
            yield {"sink": sink, "smtp_port": port, "district_config": str(district_file)}
        finally:
            controller.stop()


async def test_co_handling_orders_late_at_a_level_are_announced_once_per_appeal_naming_every_late_unit(
        escalation, servers, frozen, js, db, recorder, notify_sinks, monkeypatch):
    monkeypatch.setenv("NOTIFY_MAX_ATTEMPTS", "3")
    sink = notify_sinks["sink"]
    async with running(create_notify, servers, sms_gateway_url=sink.url, smtp_host="127.0.0.1",
                       smtp_port=notify_sinks["smtp_port"], quiet_hours="",
                       district_config=notify_sinks["district_config"]):
        appeal = new_appeal()
        registration = ev.AppealRegistered(
            event_id=f"int-{uuid.uuid4().hex}", occurred_at=at(2026, 9, 30, 10, 0), appeal_id=appeal,
            source_ref="hotline:CALL-T", correlation_id=f"corr-{appeal}", channel="hotline", source_id=f"CALL-{appeal}",
            enterprise={"name": "四川东航投资有限公司"}, contact={"name": "潘星", "phone": "13912340000"},
            content="东航中心路口左转车道通行不便", category_hint="交通出行", kind="appeal",
            received_at=at(2026, 9, 30, 10, 0))
        await send(js, subjects.APPEAL_REGISTERED, registration)  # notify has the contact: nothing waits for it
        # the lead order is due 13 October, the co-handling one 14 October: two clocks
        lead, co = await co_handled(js, db, appeal, co_deadline_days=6)

        # 15 October: the lead order reaches the district leader; the co-handling one is one day overdue
        frozen.set(at(2026, 10, 15, 17, 31))
        (leader,) = await wait_for(lambda: appeal_escalations(recorder, appeal, "district_leader"), what="the leader")
        # 16 October: the co-handling order reaches the leader level too: recorded, not announced again
        frozen.set(at(2026, 10, 16, 17, 31))
        await wait_for(lambda: _fired(db, co, "district_leader"), what="the co order's leader step recorded")
        # 20 and 21 October: supervision, first for the lead order, then for the co-handling one
        frozen.set(at(2026, 10, 20, 17, 31))
        (notice,) = await wait_for(lambda: appeal_escalations(recorder, appeal, "supervision"), what="the notice")
        frozen.set(at(2026, 10, 21, 17, 31))
        await wait_for(lambda: _fired(db, co, "supervision"), what="the co order's supervision step recorded")
        await settle(db, escalation)

        # one event per appeal and level, naming both late orders, each with its own deadline
        assert len(appeal_escalations(recorder, appeal, "district_leader")) == 1
        assert len(appeal_escalations(recorder, appeal, "supervision")) == 1
        for event, (lead_late, co_late) in ((leader, (2 * 86400 + 60, 86400 + 60)),
                                            (notice, (7 * 86400 + 60, 6 * 86400 + 60))):
            assert [(o["order_id"], o["unit_code"], o["role"], o["due_at"], o["overdue_seconds"])
                    for o in event["late_orders"]] == [
                (lead, UNIT, "lead", "2026-10-13T17:30:00+08:00", lead_late),
                (co, CO_UNIT, "co", "2026-10-14T17:30:00+08:00", co_late)]
            assert event["order_id"] == lead and event["unit_code"] == UNIT  # the first late order
        assert names(leader) == [("district_leader", "刘建国")]
        assert names(notice) == [("supervision_office", "周文斌")]
        # each unit's own overdue notice (督办) stays per order
        overdue = appeal_escalations(recorder, appeal, "overdue")
        assert sorted((e["order_id"], e["clock"]) for e in overdue) == [(lead, "handling"), (co, "handling")]
        assert all(e["late_orders"] == [] for e in overdue)
        # every order's step is recorded as fired, under the appeal's one event of its level
        for level, event in (("district_leader", leader), ("supervision", notice)):
            rows = [r for o in (lead, co) for r in await firing_rows(db, o) if r["level"] == level]
            assert len(rows) == 2 and {r["event_id"] for r in rows} == {event["event_id"]}
            assert all(r["fired_at"] for r in rows)
        recorded = await db.fetch("SELECT level, event_id FROM escalation.appeal_escalations WHERE appeal_id = $1"
                                  " ORDER BY level", appeal)
        assert [(r["level"], r["event_id"]) for r in recorded] == [
            ("district_leader", leader["event_id"]), ("supervision", notice["event_id"])]

        # notify: the leader gets one SMS for the appeal at its level, naming both late units
        async def leader_sms():
            return [m for m in sink.messages if m["to"].endswith(LEADER_PHONE) and appeal in m["text"]]
        (sms,) = await wait_for(leader_sms, what="the leader's SMS")
        assert "区公安分局交警大队（主办" in sms["text"] and "区交通运输局（协办" in sms["text"]
        overdue_ids = [e["event_id"] for e in overdue]

        async def planned():
            rows = await db.fetch("SELECT cause_event_id, recipient_role, channel, address, status, text"
                                  " FROM notify.notifications WHERE appeal_id = $1", appeal)
            done = {r["cause_event_id"] for r in rows if r["status"] != "pending"}
            return rows if {leader["event_id"], notice["event_id"], *overdue_ids} <= done else None
        rows = await wait_for(planned, timeout=20, what="notify planned and sent the escalations")
        to_leader = [r for r in rows if r["recipient_role"] == "district_leader"]
        assert sorted(r["channel"] for r in to_leader) == ["email", "sms"]  # once per channel, not per order
        to_office = [r for r in rows if r["recipient_role"] == "supervision_office"]
        assert {r["cause_event_id"] for r in to_office} == {notice["event_id"]}
        assert len(to_office) == len({(r["channel"], r["address"]) for r in to_office})
        assert all(lead in r["text"] and co in r["text"] for r in to_office)
        # each unit's overdue notice reaches its own head, per order
        heads = {(r["cause_event_id"], r["address"]) for r in rows
                 if r["recipient_role"] == "unit_head" and r["channel"] == "sms"}
        assert len(heads) == 2 and {e for e, _ in heads} == set(overdue_ids)
        assert len({a for _, a in heads}) == 2  # two units, two heads


async def _fired(db, order_id: str, level: str) -> bool:
    return await _all_fired(db, (order_id,), level)


async def _all_fired(db, order_ids: tuple[str, ...], level: str) -> bool:
    return await db.fetchval("SELECT count(*) FROM escalation.firings WHERE order_id = ANY($1::text[])"
                             " AND level = $2 AND fired_at IS NOT NULL", list(order_ids), level) == len(order_ids)


async def test_an_appeal_step_is_announced_once_whichever_replica_records_it_even_one_that_dies(
        escalation, servers, frozen, js, db, recorder):
    appeal = new_appeal()
    lead, co = await co_handled(js, db, appeal, co_deadline_days=5)  # both due 13 October 17:30
    leader_step, notice_step = (AppealStep(appeal, 0, level) for level in ("district_leader", "supervision"))
    other = await asyncpg.connect(servers["DATABASE_URL"])
    try:
        # another replica recorded the appeal's leader step and dies before committing
        dying = other.transaction()
        await dying.start()
        await other.execute("INSERT INTO escalation.appeal_escalations (appeal_id, round, level, event_id,"
                            " late_orders, fired_at, fired_by) VALUES ($1, 0, 'district_leader', $2, '[]', now(),"
                            " 'dying')", appeal, leader_step.event_id)
        frozen.set(at(2026, 10, 15, 17, 31))
        # the scanner's round waits on the uncommitted row, publishing nothing meanwhile
        await wait_for(lambda: db.fetchval("SELECT count(*) > 0 FROM pg_locks WHERE NOT granted"),
                       what="the scanner waiting for the other replica")
        assert appeal_escalations(recorder, appeal, "district_leader") == []
        await dying.rollback()
        (leader,) = await wait_for(lambda: appeal_escalations(recorder, appeal, "district_leader"), what="the leader")
        assert [o["order_id"] for o in leader["late_orders"]] == [lead, co]

        # another replica announced the supervision step and committed: this one only records its steps
        await other.execute("INSERT INTO escalation.appeal_escalations (appeal_id, round, level, event_id,"
                            " late_orders, fired_at, fired_by) VALUES ($1, 0, 'supervision', $2, '[]', now(),"
                            " 'other')", appeal, notice_step.event_id)
    finally:
        await other.close()
    frozen.set(at(2026, 10, 20, 17, 31))
    await wait_for(lambda: _all_fired(db, (lead, co), "supervision"), what="both orders' steps recorded")
    await settle(db, escalation)
    assert appeal_escalations(recorder, appeal, "supervision") == []
    assert len(appeal_escalations(recorder, appeal, "district_leader")) == 1
    rows = [r for o in (lead, co) for r in await firing_rows(db, o) if r["level"] == "supervision"]
    assert {r["event_id"] for r in rows} == {notice_step.event_id}

    # a restart (as after kill -9) repeats nothing
    async with running(create_service, servers, scan_interval_s=0.05) as again:
        await settle(db, again)
    assert len(appeal_escalations(recorder, appeal, "district_leader")) == 1
    assert appeal_escalations(recorder, appeal, "supervision") == []
