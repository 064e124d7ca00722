"""Escalation's use cases on a fake unit of work: what they stage, what the inbox refuses, what the scanner fires.

No database and no broker: the repositories are in memory, with the behaviour
of the SQL in ``services/escalation/store.py`` that the use cases rely on
(a step stored once per (order, key), fired steps stay fired, closures and
ratings once per event).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.escalation import use_cases
from services.escalation.config import Context, EscalationConfig, context
from services.escalation.domain import DIFFICULT_KEY, AppealStep, CategoryPolicy, OrderFacts, PolicyTable
from services.escalation.store import Closure, DueStep, Rating
from services.escalation.use_cases import Received
from shared.contracts import MonthlyListItem, subjects
from shared.contracts import events as ev
from tests.unit.fakes import FakeUnitOfWork

SH = ZoneInfo("Asia/Shanghai")
UNIT = "traffic_police"  # liaisons 吴刚, 郑洁; head 王建军
# what dispatch snapshots: its limits and who is told, no ladder timings
SNAPSHOT = ev.OrderPolicy(deadline_days=5, sign_hours=4, district_leader="leader_chen",
                          lead_unit="approval_bureau", supervision_office="supervision_office")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


# --- in-memory repositories -----------------------------------------------------------------


class FakeClocks:
    def __init__(self) -> None:
        self.orders: dict[str, tuple[OrderFacts, dict]] = {}
        self.closures: dict[str, Closure] = {}
        self.ratings: dict[tuple[str, str], Rating] = {}
        self.firings: dict[tuple[str, str], dict] = {}
        self.appeal_steps: dict[AppealStep, dict] = {}
        self.locked: list[list[str]] = []
        self.loads = 0

    async def lock_appeals(self, appeal_ids) -> None:
        self.locked.append(sorted(set(appeal_ids)))

    async def add_closures(self, closures) -> None:
        for c in closures:
            self.closures.setdefault(c.event_id, c)

    async def add_ratings(self, ratings) -> None:
        for r in ratings:
            self.ratings.setdefault((r.event_id, r.unit_code), r)

    async def orders_of_appeals(self, appeal_ids) -> list[str]:
        return [o for o, (f, _) in self.orders.items() if f.appeal_id in set(appeal_ids)]

    async def load_orders(self, order_ids):
        self.loads += 1
        # as the table: the appeal's closures are not stored on the order
        return {o: (dataclasses.replace(f, closed_at=None, merged_at=None), dict(p))
                for o, (f, p) in self.orders.items() if o in set(order_ids)}

    async def closures_of(self, appeal_ids):
        out: dict[str, list] = {}
        for c in self.closures.values():
            if c.appeal_id in set(appeal_ids):
                out.setdefault(c.appeal_id, []).append((c.closed_at, c.kind))
        return out

    async def firing_states(self, order_ids):
        out: dict[str, dict[str, str]] = {}
        for (o, key), row in self.firings.items():
            if o in set(order_ids):
                out.setdefault(o, {})[key] = row["state"]
        return out

    async def save_orders(self, orders) -> None:
        for facts, _plan, published in orders:
            self.orders[facts.order_id] = (facts, dict(published))

    def _add(self, facts: OrderFacts, key: str, **row) -> None:
        self.firings.setdefault((facts.order_id, key), {
            "firing_id": len(self.firings) + 1, "order_id": facts.order_id, "appeal_id": facts.appeal_id,
            "unit_code": facts.unit_code, "step_key": key, "state": "pending", "event_id": None, **row})

    async def add_firings(self, steps, now) -> None:  # noqa: ARG002
        for facts, f in steps:
            self._add(facts, f.key, clock=f.clock, level=f.level, due_at=f.due_at, fire_at=f.fire_at, reason=None)

    async def add_difficult(self, requests, now) -> None:
        for facts, due, reason in requests:
            self._add(facts, DIFFICULT_KEY, clock="handling", level="difficult", due_at=due, fire_at=now,
                      reason=reason)

    async def cancel_firings(self, steps, now) -> int:  # noqa: ARG002
        cancelled = 0
        for key in steps:
            row = self.firings.get(key)
            if row and row["state"] == "pending":
                row["state"] = "cancelled"
                cancelled += 1
        return cancelled

    async def claim_due(self, now, limit) -> list[DueStep]:
        due = sorted((r for r in self.firings.values() if r["state"] == "pending" and r["fire_at"] <= now),
                     key=lambda r: r["fire_at"])[:limit]
        return [DueStep(firing_id=r["firing_id"], order_id=r["order_id"], appeal_id=r["appeal_id"],
                        unit_code=r["unit_code"], clock=r["clock"], level=r["level"], step_key=r["step_key"],
                        due_at=r["due_at"], fire_at=r["fire_at"], requested_reason=r["reason"]) for r in due]

    async def mark_fired(self, fired, now, replica) -> None:  # noqa: ARG002
        by_id = {r["firing_id"]: r for r in self.firings.values()}
        for firing_id, event_id in fired:
            by_id[firing_id].update(state="fired", event_id=event_id, fired_by=replica)

    async def announce_appeal_steps(self, steps, now, replica) -> set[AppealStep]:
        # as the table's unique key: a step recorded once, whoever records it again
        new = {step for step, _, _ in steps if step not in self.appeal_steps}
        for step, event_id, late in steps:
            self.appeal_steps.setdefault(step, {"event_id": event_id, "late_orders": json.loads(late),
                                                "fired_at": now, "fired_by": replica})
        return new

    def levels(self, order_id: str, state: str | None = None) -> list[tuple[str, str]]:
        rows = sorted((r for (o, _), r in self.firings.items() if o == order_id and state in (None, r["state"])),
                      key=lambda r: r["fire_at"])
        return [(r["clock"], r["level"]) for r in rows]


class FakeEvaluation:
    def __init__(self) -> None:
        self.notices: list[MonthlyListItem] = []
        self.asked: list[tuple[datetime, datetime]] = []

    async def noticed_in(self, start, end) -> list[MonthlyListItem]:
        self.asked.append((start, end))
        return [n for n in self.notices if start <= n.noticed_at < end]


class FakeInbox:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self.uow = uow

    async def seen(self, consumer: str, key: str) -> bool:
        return (consumer, key) in self.uow.handled


class FakeCalendar:
    """No State Council year loaded (the signature of none)."""

    async def signature(self) -> str:
        return ""

    async def years(self) -> list:
        return []


class FakeEscalationUnitOfWork(FakeUnitOfWork):
    def __init__(self) -> None:
        super().__init__("escalation", publishes=use_cases.PUBLISHES)
        self.clocks = FakeClocks()
        self.evaluation = FakeEvaluation()
        self.calendar = FakeCalendar()
        self.inbox = FakeInbox(self)


@pytest.fixture
def uow() -> FakeEscalationUnitOfWork:
    return FakeEscalationUnitOfWork()


@pytest.fixture(scope="module")
def ctx() -> Context:
    return context()


# --- events, as dispatch publishes them -------------------------------------------------------


def new_appeal() -> str:
    return f"CT-U{uuid.uuid4().hex[:12]}"


def _order(appeal_id: str, order_id: str, occurred_at: datetime) -> dict:
    return {"event_id": f"dsp-{uuid.uuid4().hex}", "occurred_at": occurred_at, "appeal_id": appeal_id,
            "source_ref": "hotline:CALL-U", "correlation_id": f"corr-{appeal_id}", "order_id": order_id,
            "unit_code": UNIT, "unit": "区公安分局交警大队"}


def dispatched(appeal_id: str, order_id: str, received_at: datetime, occurred_at: datetime) -> Received:
    event = ev.OrderDispatched(**_order(appeal_id, order_id, occurred_at), role="lead", category="交通出行",
                               received_at=received_at, deadline_days=5, sign_hours=4, policy=SNAPSHOT,
                               summary="东航中心路口左转车道通行不便")
    return Received(subjects.ORDER_DISPATCHED, event, event.event_id)


def received(subject: str, event) -> Received:
    return Received(subject, event, event.event_id)


async def record(uow, ctx, *events: Received, now: datetime = at(2026, 9, 30, 11, 0)) -> int:
    async with uow:
        return await use_cases.record_clock_events(uow, ctx, list(events), now)


async def fire(uow, ctx, now: datetime, limit: int = 50) -> list[DueStep]:
    async with uow:
        return await use_cases.fire_due_steps(uow, ctx, now, limit, "replica-1")


# --- clock events -----------------------------------------------------------------------------


async def test_a_dispatched_order_stages_its_two_deadlines_and_plans_its_ladder(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    dispatch = dispatched(appeal, order, at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0))
    assert await record(uow, ctx, dispatch) == 1

    assert uow.clocks.locked == [[appeal]] and uow.handled == {("escalation-events", dispatch.event.event_id)}
    sets = {e.clock: e.due_at for e in uow.published(subjects.DEADLINE_SET)}
    # five working days, the National Day holiday skipped; four working hours from 11:00
    assert sets == {"handling": at(2026, 10, 13, 17, 30), "sign_for": at(2026, 9, 30, 16, 30)}
    assert {(s, type(e)) for s, e in uow.committed} == {(subjects.DEADLINE_SET, ev.DeadlineSet)}
    assert uow.clocks.levels(order) == [
        ("sign_for", "overdue"), ("handling", "warning_75"), ("handling", "warning_1d"), ("handling", "overdue"),
        ("handling", "district_leader"), ("handling", "supervision")]


async def test_an_event_handled_before_is_refused_by_the_inbox_and_stages_nothing(uow, ctx):
    appeal = new_appeal()
    dispatch = dispatched(appeal, f"{appeal}-01", at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0))
    assert await record(uow, ctx, dispatch) == 1
    planned = dict(uow.clocks.firings)
    published, loads = len(uow.committed), uow.clocks.loads

    assert await record(uow, ctx, dispatch) == 0  # redelivered, or republished under another Nats-Msg-Id
    assert len(uow.committed) == published and uow.commits == 2
    assert uow.clocks.loads == loads  # not applied again: the order was not even read
    assert uow.clocks.firings == planned
    assert ("escalation-events", dispatch.key) in uow.handled


async def test_the_same_event_twice_in_one_batch_counts_once(uow, ctx):
    appeal = new_appeal()
    dispatch = dispatched(appeal, f"{appeal}-01", at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0))
    assert await record(uow, ctx, dispatch, dispatch) == 1
    assert len(uow.published(subjects.DEADLINE_SET)) == 2


async def test_the_ladder_timings_come_from_escalations_policy_table_not_from_dispatchs_snapshot(uow):
    # traffic appeals: the district leader hears 4 working days after the deadline (the default is 2)
    base = context()
    ctx = Context(base.calendar, base.district, EscalationConfig(
        policies=PolicyTable(categories={"交通出行": CategoryPolicy(leader_after_days=4)})))
    appeal = new_appeal()
    order = f"{appeal}-01"
    await record(uow, ctx, dispatched(appeal, order, at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)))

    facts, _ = uow.clocks.orders[order]
    assert facts.policy == {"warning_fraction": 0.75, "warning_days_before": 1, "leader_after_days": 4,
                            "supervision_after_days": 3}
    leader = next(r for r in uow.clocks.firings.values() if r["order_id"] == order and r["level"] == "district_leader")
    assert leader["fire_at"] == at(2026, 10, 19, 17, 30)  # 13 October + 4 working days


async def test_a_reply_cancels_the_pending_handling_steps_and_publishes_no_deadline(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await record(uow, ctx, dispatched(appeal, order, at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)))
    before = len(uow.committed)
    reply = ev.OrderReplied(**_order(appeal, order, at(2026, 9, 30, 12, 0)), reply="已调整信号灯配时", resolved=True)
    await record(uow, ctx, received(subjects.ORDER_REPLIED, reply), now=at(2026, 9, 30, 12, 0))

    assert len(uow.committed) == before  # a stopped clock moves no deadline
    # a reply stops both clocks: every step not yet due is cancelled
    assert uow.clocks.levels(order, "pending") == []
    assert len(uow.clocks.levels(order, "cancelled")) == 6
    assert uow.clocks.orders[order][0].replied_at == at(2026, 9, 30, 12, 0)


async def test_a_satisfied_closure_rates_each_unit_once_and_stops_the_appeals_orders(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await record(uow, ctx, dispatched(appeal, order, at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)))
    closure = ev.AppealClosed(event_id=f"dsp-{uuid.uuid4().hex}", occurred_at=at(2026, 10, 9, 10, 0),
                              appeal_id=appeal, outcome="satisfied", unit_codes=[UNIT, UNIT])
    await record(uow, ctx, received(subjects.APPEAL_CLOSED, closure), now=at(2026, 10, 9, 10, 0))

    assert list(uow.clocks.closures.values()) == [
        Closure(closure.event_id, appeal, "closed", at(2026, 10, 9, 10, 0), "satisfied")]
    assert list(uow.clocks.ratings.values()) == [
        Rating(closure.event_id, UNIT, appeal, "satisfied", "closed", at(2026, 10, 9, 10, 0))]
    # the steps due before the closure stay (the sign-for overdue fired or still fires); the rest are cancelled
    assert uow.clocks.levels(order, "pending") == [("sign_for", "overdue")]


# --- the scanner's round ------------------------------------------------------------------------


async def test_the_scanner_fires_a_backlog_lowest_step_first_and_each_step_once(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await record(uow, ctx, dispatched(appeal, order, at(2026, 3, 2, 10, 0), at(2026, 6, 1, 10, 0)),
                 now=at(2026, 6, 1, 10, 0))
    uow.committed.clear()

    fired = await fire(uow, ctx, at(2026, 6, 1, 10, 1))
    assert [s.level for s in fired] == ["overdue", "district_leader", "supervision"]
    events = uow.published(subjects.APPEAL_ESCALATED)
    assert [e.level for e in events] == ["overdue", "district_leader", "supervision"]
    assert [(t.role, t.name) for t in events[1].targets] == [("district_leader", "刘建国")]
    assert events[2].due_at == at(2026, 3, 9, 17, 30)
    rows = [r for r in uow.clocks.firings.values() if r["state"] == "fired"]
    assert {r["event_id"] for r in rows} == {e.event_id for e in events} and {r["fired_by"] for r in rows} == {"replica-1"}

    assert await fire(uow, ctx, at(2026, 6, 1, 10, 2)) == []  # nothing fires twice
    assert len(uow.committed) == 3


async def test_a_units_escalation_request_fires_a_difficult_step_once_to_the_leader(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    request = ev.EscalationRequested(**_order(appeal, order, at(2026, 9, 30, 11, 10)), reason="涉及规划调整，需区领导协调")
    again = ev.EscalationRequested(**_order(appeal, order, at(2026, 9, 30, 11, 20)), reason="再次申请")
    await record(uow, ctx, dispatched(appeal, order, at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)),
                 received(subjects.ORDER_ESCALATION_REQUESTED, request))
    await record(uow, ctx, received(subjects.ORDER_ESCALATION_REQUESTED, again), now=at(2026, 9, 30, 11, 20))

    fired = await fire(uow, ctx, at(2026, 9, 30, 11, 30))
    assert [s.level for s in fired] == ["difficult"]
    (event,) = uow.published(subjects.APPEAL_ESCALATED)
    assert [(t.role, t.name) for t in event.targets] == [("district_leader", "刘建国"), ("lead_unit", "孙志刚")]
    assert "涉及规划调整" in event.reason and event.overdue_seconds == 0


# --- the monthly list ------------------------------------------------------------------------------


def notice(noticed_at: datetime) -> MonthlyListItem:
    return MonthlyListItem(appeal_id="CT-X", order_id="CT-X-01", unit_code=UNIT, unit="区公安分局交警大队",
                           summary="", due_at=at(2031, 3, 1, 17, 30), level="supervision", noticed_at=noticed_at)


async def test_the_monthly_list_is_staged_once_and_then_read_no_more(uow):
    uow.evaluation.notices = [notice(at(2031, 3, 20, 10, 0)), notice(at(2031, 4, 2, 9, 0))]
    async with uow:
        assert await use_cases.publish_monthly_list(uow, "2031-03", at(2031, 4, 1, 9, 0)) == 1
    (listed,) = uow.published(subjects.DEADLINE_MONTHLY_LIST)
    assert listed.month == "2031-03" and [i.noticed_at for i in listed.items] == [at(2031, 3, 20, 10, 0)]

    async with uow:
        assert await use_cases.publish_monthly_list(uow, "2031-03", at(2031, 4, 1, 9, 5)) == 0
    assert len(uow.published()) == 1
    assert len(uow.evaluation.asked) == 1  # the inbox says it is done: the notices are not read again


async def test_a_month_without_notices_is_not_recorded_so_a_later_round_still_lists_it(uow):
    async with uow:
        assert await use_cases.publish_monthly_list(uow, "2031-05", at(2031, 6, 1, 9, 0)) == 0
    assert uow.published() == [] and ("escalation-monthly-list", "2031-05") not in uow.handled
    uow.evaluation.notices = [notice(at(2031, 5, 31, 23, 0))]
    async with uow:
        assert await use_cases.publish_monthly_list(uow, "2031-05", at(2031, 6, 1, 9, 5)) == 1


async def test_a_bad_month_is_refused_before_anything_is_read(uow):
    with pytest.raises(ValueError, match="YYYY-MM"):
        async with uow:
            await use_cases.publish_monthly_list(uow, "2031-13", at(2031, 6, 1, 9, 0))
    assert uow.rollbacks == 1 and uow.evaluation.asked == []


# --- co-handling orders: the leader and the supervision office hear once per appeal -------------------


CO_UNIT = "transport_bureau"


def co_dispatched(appeal_id: str, order_id: str, unit_code: str, role: str, received_at: datetime,
                  occurred_at: datetime, deadline_days: int = 5) -> Received:
    fields = _order(appeal_id, order_id, occurred_at) | {"unit_code": unit_code, "unit": unit_code}
    event = ev.OrderDispatched(**fields, role=role, category="交通出行", received_at=received_at,
                               deadline_days=deadline_days, sign_hours=4, policy=SNAPSHOT,
                               summary="东航中心路口左转车道通行不便")
    return Received(subjects.ORDER_DISPATCHED, event, event.event_id)


def escalations(uow, level: str) -> list[ev.AppealEscalated]:
    return [e for e in uow.published(subjects.APPEAL_ESCALATED) if e.level == level]


async def test_a_co_handled_backlog_appeal_reaches_the_leader_and_supervision_once_each_naming_both_units(uow, ctx):
    appeal = new_appeal()
    lead, co = f"{appeal}-01", f"{appeal}-02"
    await record(uow, ctx, co_dispatched(appeal, lead, UNIT, "lead", at(2026, 3, 2, 10, 0), at(2026, 6, 1, 10, 0)),
                 co_dispatched(appeal, co, CO_UNIT, "co", at(2026, 3, 2, 10, 0), at(2026, 6, 1, 10, 0)),
                 now=at(2026, 6, 1, 10, 0))
    uow.committed.clear()

    fired = await fire(uow, ctx, at(2026, 6, 1, 10, 1))
    assert len(fired) == 6  # overdue, district_leader and supervision of each order
    levels = [e.level for e in uow.published(subjects.APPEAL_ESCALATED)]
    assert levels == ["overdue", "overdue", "district_leader", "supervision"]  # lowest first
    assert {e.order_id for e in escalations(uow, "overdue")} == {lead, co}  # each unit's own notice (督办)
    for level in ("district_leader", "supervision"):
        (event,) = escalations(uow, level)
        assert [(o.order_id, o.unit_code, o.role) for o in event.late_orders] == [(lead, UNIT, "lead"), (co, CO_UNIT, "co")]
        assert event.order_id == lead and event.due_at == at(2026, 3, 9, 17, 30)
        assert uow.clocks.appeal_steps[AppealStep(appeal, 0, level)]["event_id"] == event.event_id
        # both orders' steps are recorded as fired, under the one event
        rows = [r for r in uow.clocks.firings.values() if r["level"] == level]
        assert {r["order_id"] for r in rows} == {lead, co} and {r["event_id"] for r in rows} == {event.event_id}
    assert [(t.role, t.name) for t in escalations(uow, "district_leader")[0].targets] == [("district_leader", "刘建国")]
    assert await fire(uow, ctx, at(2026, 6, 1, 10, 2)) == []


async def test_an_order_late_at_a_level_later_is_recorded_under_the_first_event_and_not_announced_again(uow, ctx):
    appeal = new_appeal()
    lead, co = f"{appeal}-01", f"{appeal}-02"
    # lead due 13 October, co due 20 October (10 working days): the co order is not late when the leader hears
    await record(uow, ctx, co_dispatched(appeal, lead, UNIT, "lead", at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0)),
                 co_dispatched(appeal, co, CO_UNIT, "co", at(2026, 9, 30, 10, 0), at(2026, 9, 30, 11, 0),
                               deadline_days=10))
    await fire(uow, ctx, at(2026, 10, 15, 17, 31))
    (leader,) = escalations(uow, "district_leader")
    assert [o.order_id for o in leader.late_orders] == [lead] and leader.overdue_seconds == 2 * 86400 + 60

    await fire(uow, ctx, at(2026, 10, 22, 17, 31))  # the co order: overdue 20 October, leader level 22 October
    assert len(escalations(uow, "district_leader")) == 1  # heard once for the appeal
    co_overdue = [e for e in escalations(uow, "overdue") if e.order_id == co and e.clock == "handling"]
    assert len(co_overdue) == 1 and co_overdue[0].late_orders == []  # the co unit's own overdue notice (督办)
    co_leader = next(r for r in uow.clocks.firings.values() if r["order_id"] == co and r["level"] == "district_leader")
    assert co_leader["state"] == "fired" and co_leader["event_id"] == leader.event_id
    # the lead order's supervision step (20 October) named both: the co order was overdue by then
    (notice,) = escalations(uow, "supervision")
    assert [o.order_id for o in notice.late_orders] == [lead, co]


async def test_an_appeal_step_recorded_by_another_replica_is_not_announced_again(uow, ctx):
    appeal = new_appeal()
    order = f"{appeal}-01"
    await record(uow, ctx, co_dispatched(appeal, order, UNIT, "lead", at(2026, 3, 2, 10, 0), at(2026, 6, 1, 10, 0)),
                 now=at(2026, 6, 1, 10, 0))
    other = AppealStep(appeal, 0, "district_leader")
    uow.clocks.appeal_steps[other] = {"event_id": other.event_id, "late_orders": [], "fired_at": at(2026, 6, 1, 10, 0),
                                      "fired_by": "replica-2"}
    await fire(uow, ctx, at(2026, 6, 1, 10, 1))
    assert [e.level for e in uow.published(subjects.APPEAL_ESCALATED)] == ["overdue", "supervision"]
    step = next(r for r in uow.clocks.firings.values() if r["level"] == "district_leader")
    assert step["state"] == "fired" and step["event_id"] == other.event_id
