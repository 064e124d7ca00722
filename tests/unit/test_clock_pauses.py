"""Clocks as data, pure: pausing a handling clock (待补充材料), a redispatched order's two clocks, the deadline's cause.

Dispatch's rules (who may pause, how often) and escalation's (what a pause counts,
where it moves the steps, what it keeps through a redispatch or a policy change).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from services.dispatch.domain import Accepted, ActionPayload, AppealState, OrderStatus, Refused, WorkOrder, decide
from services.escalation import domain as esc
from services.escalation.domain.order_clock import OrderFacts, plan_order, reconcile
from services.escalation.domain.policy import EscalationPolicy
from shared.contracts import subjects
from shared.contracts.events import ClockPause
from shared.district import load_district
from shared.workcalendar import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
UNIT = "traffic_police"
LEAD = "approval_bureau"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


# received Monday 2026-11-02 09:00, 5 working days: due Monday 2026-11-09 17:30
RECEIVED = at(2026, 11, 2, 9, 0)
DUE = at(2026, 11, 9, 17, 30)


def facts(**changes) -> OrderFacts:
    base = OrderFacts(order_id="A1-W01", appeal_id="A1", unit_code=UNIT, unit="交警", received_at=RECEIVED,
                      dispatched_at=RECEIVED, deadline_days=5, sign_hours=4, policy=EscalationPolicy().to_dict(),
                      signed_at=at(2026, 11, 2, 10, 0))
    return replace(base, **changes)


def pause(n: int, start: datetime, end: datetime | None, order_id: str = "A1-W01", days: int = 10) -> ClockPause:
    return ClockPause(pause_id=f"{order_id}:P{n}", order_id=order_id, started_at=start, ended_at=end,
                      max_working_days=days, reason="等待企业补充营业执照副本")


def steps(plan) -> dict[str, tuple[datetime, datetime]]:
    return {f.level: (f.fire_at, f.due_at) for f in plan.steps if f.clock == "handling"}


# --- escalation: what a pause counts and moves ------------------------------------------------------


def test_a_resumed_pause_moves_the_deadline_and_the_later_steps_by_its_working_time():
    plain = plan_order(facts(), CAL)
    assert plain.handling_due == DUE
    # paused Wednesday 10:00, resumed Friday 10:00: two working days
    paused = plan_order(facts(pauses=(pause(1, at(2026, 11, 4, 10), at(2026, 11, 6, 10)),)), CAL)
    assert paused.handling_due == at(2026, 11, 11, 17, 30)
    assert paused.paused is None and paused.paused_seconds == 2 * CAL.working_day_seconds
    before, after = steps(plain), steps(paused)
    # warning_75 fell on Friday 15:45 of the plain plan, after the pause began: it moves by its two days
    assert before["warning_75"][0] == at(2026, 11, 6, 15, 45)
    assert after["warning_75"][0] == at(2026, 11, 10, 15, 45)
    assert after["overdue"] == (at(2026, 11, 11, 17, 30), at(2026, 11, 11, 17, 30))
    assert after["district_leader"][0] == at(2026, 11, 13, 17, 30)


def test_a_step_that_fell_before_the_pause_keeps_its_key_and_does_not_fire_again():
    early = facts(deadline_days=2)  # due Wednesday 17:30; warning_1d Wednesday 09:00, warning_75 14:00
    plain = plan_order(early, CAL)
    w75 = next(f for f in plain.steps if f.level == "warning_75")
    # paused after both warnings fired, resumed an hour later
    paused = plan_order(replace(early, pauses=(pause(1, at(2026, 11, 4, 15), at(2026, 11, 4, 16)),)), CAL)
    assert next(f for f in paused.steps if f.level == "warning_75").key == w75.key
    assert paused.handling_due == at(2026, 11, 5, 10, 0)
    stored = {f.key: "fired" if f.fire_at <= at(2026, 11, 4, 15) else "pending" for f in plain.steps}
    change = reconcile(paused, stored)
    assert w75.key not in {f.key for f in change.add}
    assert {f.level for f in change.add} >= {"overdue", "district_leader", "supervision"}
    assert all(stored[k] == "pending" for k in change.cancel)


def test_an_open_pause_plans_the_steps_for_when_the_clock_runs_again_by_itself():
    open_one = plan_order(facts(pauses=(pause(1, at(2026, 11, 4, 10), None, days=3),)), CAL)
    assert open_one.paused is not None and open_one.paused.end == at(2026, 11, 9, 10)
    assert open_one.handling_due == at(2026, 11, 12, 17, 30)  # three working days later
    # no step of the handling clock falls inside the pause
    assert not [f for f in open_one.steps if at(2026, 11, 4, 10) < f.fire_at < at(2026, 11, 9, 10)]


def test_a_pause_counts_at_most_its_length_and_a_reply_ends_it():
    long_one = plan_order(facts(pauses=(pause(1, at(2026, 11, 4, 10), at(2026, 11, 30, 10), days=2),)), CAL)
    assert long_one.handling_due == at(2026, 11, 11, 17, 30)
    replied = plan_order(facts(pauses=(pause(1, at(2026, 11, 4, 10), None),), replied_at=at(2026, 11, 5, 10)), CAL)
    assert replied.paused is None and replied.paused_seconds == CAL.working_day_seconds


def test_a_pause_after_the_deadline_does_not_move_the_ladder():
    late = plan_order(facts(pauses=(pause(1, at(2026, 11, 10, 10), at(2026, 11, 12, 10)),)), CAL)
    assert late.handling_due == DUE and late.pauses == ()


def test_the_paused_time_survives_a_redispatch_a_category_and_a_policy_change():
    p = pause(1, at(2026, 11, 4, 10), at(2026, 11, 6, 10))
    # the new order (another unit, another category's days and policy) carries the old order's pause
    new = facts(order_id="A1-W02", unit_code="transport_bureau", deadline_days=7, replaces_order_id="A1-W01",
                policy=EscalationPolicy(warning_fraction=0.5).to_dict(), pauses=(p,), signed_at=at(2026, 11, 9, 9))
    plan = plan_order(new, CAL)
    assert plan.handling_due == CAL.add_working_hours(CAL.add_working_days(RECEIVED, 7),
                                                      2 * CAL.working_day_seconds / 3600)
    # merging later events of the new order keeps the pause; the same pause twice counts once
    merged = esc.merge_facts(new, OrderFacts(order_id="A1-W02", appeal_id="A1", unit_code="transport_bureau",
                                             pauses=(p,)))
    assert merged.pauses == (p,)


def test_merging_a_pause_and_its_resume_in_any_order_gives_the_resumed_pause():
    opened, resumed = pause(1, at(2026, 11, 4, 10), None), pause(1, at(2026, 11, 4, 10), at(2026, 11, 5, 10))
    a = esc.merge_facts(facts(pauses=(opened,)), facts(pauses=(resumed,)))
    b = esc.merge_facts(facts(pauses=(resumed,)), facts(pauses=(opened,)))
    assert a.pauses == b.pauses == (resumed,)


# --- the two clocks of a redispatched order ------------------------------------------------------------


def test_a_redispatched_orders_unit_clock_starts_at_its_sign_for_the_appeal_clock_at_receipt():
    new = facts(order_id="A1-W02", replaces_order_id="A1-W01", dispatched_at=at(2026, 11, 6, 9),
                signed_at=at(2026, 11, 6, 10))
    plan = plan_order(new, CAL)
    assert plan.handling_due == DUE                            # the enterprise's deadline, from receipt
    assert plan.unit_due == at(2026, 11, 13, 17, 30)          # five working days from Friday's sign-for
    assert plan.runs("unit")
    published = dict(esc.deadlines_to_publish(plan, {}))
    assert published["unit"] == plan.unit_due and published["handling"] == DUE
    assert {f.clock for f in plan.steps} <= {"sign_for", "handling"}  # no ladder on the unit's clock
    # a first order has no unit clock; nor has a reopened one (its handling clock restarts)
    assert plan_order(facts(), CAL).unit_due is None
    assert plan_order(replace(new, reopen_count=1), CAL).unit_due is None


def test_the_unit_clock_moves_by_the_units_own_pauses_only():
    inherited = pause(1, at(2026, 11, 3, 10), at(2026, 11, 4, 10), order_id="A1-W01")
    own = pause(1, at(2026, 11, 9, 10), at(2026, 11, 10, 10), order_id="A1-W02")
    new = facts(order_id="A1-W02", replaces_order_id="A1-W01", dispatched_at=at(2026, 11, 6, 9),
                signed_at=at(2026, 11, 6, 10), pauses=(inherited, own))
    plan = plan_order(new, CAL)
    assert plan.unit_due == at(2026, 11, 16, 17, 30)    # one working day (its own pause) after 13 November
    assert plan.handling_due == at(2026, 11, 11, 17, 30)  # both pauses: two working days after 9 November


# --- the cause of a published deadline -------------------------------------------------------------


def test_each_published_deadline_says_why():
    known = facts()
    published = {"handling": DUE}
    p = pause(1, at(2026, 11, 4, 10), None)
    assert esc.deadline_cause(None, known, "handling", {}) == "started"
    assert esc.deadline_cause(known, replace(known, pauses=(p,)), "handling", published) == "paused"
    resumed = p.model_copy(update={"ended_at": at(2026, 11, 5, 10)})
    assert esc.deadline_cause(replace(known, pauses=(p,)), facts(pauses=(resumed,)), "handling", published) == "resumed"
    assert esc.deadline_cause(known, replace(known, extension_days=3), "handling", published) == "extension"
    assert esc.deadline_cause(known, None, "handling", published) == "calendar_revised"


def test_a_deadline_back_where_it_was_after_a_pause_is_a_new_event():
    known = facts()
    plan = plan_order(known, CAL)
    before = esc.deadline_set_event(known, "handling", DUE, RECEIVED, plan, "started")
    # paused and resumed within the lunch break: no working time, the deadline stands where it was
    lunch = replace(known, pauses=(pause(1, at(2026, 11, 4, 12, 10), at(2026, 11, 4, 13, 0)),))
    again = esc.deadline_set_event(lunch, "handling", DUE, at(2026, 11, 4, 13), plan_order(lunch, CAL), "resumed")
    assert again.event_id != before.event_id and again.cause == "resumed"
    paused = replace(known, pauses=(pause(1, at(2026, 11, 4, 10), None),))
    event = esc.deadline_set_event(paused, "handling", DUE, at(2026, 11, 4, 10), plan_order(paused, CAL), "paused")
    assert event.paused_since == at(2026, 11, 4, 10) and event.resumes_by == at(2026, 11, 18, 10)


# --- dispatch: who may pause ----------------------------------------------------------------------------


def _order(**changes) -> WorkOrder:
    return WorkOrder(**{"order_id": "A1-W01", "appeal_id": "A1", "unit_code": UNIT, "status": OrderStatus.signed,
                        "dispatched_at": RECEIVED, "signed_at": RECEIVED, **changes})


def _appeal() -> AppealState:
    return AppealState(appeal_id="A1", received_at=RECEIVED, orders_issued=1, unit_codes=(UNIT,))


def test_a_signed_order_pauses_and_resumes_its_clock_and_a_redispatch_carries_the_pauses():
    district = load_district()
    paused = decide(district, _order(), "pause", UNIT, ActionPayload(actor="吴刚", reason="等企业补材料"), _appeal(),
                    at(2026, 11, 4, 10))
    assert isinstance(paused, Accepted) and paused.subjects == (subjects.ORDER_PAUSED,)
    order = paused.new_state
    assert order.paused and order.pauses[0].pause_id == "A1-W01:P1"
    assert order.pauses[0].max_working_days == district.pauses.max_working_days
    moved = decide(district, order, "redispatch", LEAD, ActionPayload(actor="王科长", unit_code="transport_bureau"),
                   _appeal(), at(2026, 11, 5, 10))
    assert isinstance(moved, Accepted)
    dispatched = next(e for e in moved.events if e.subject == subjects.ORDER_DISPATCHED).build()
    assert [(p.pause_id, p.ended_at) for p in dispatched.pauses] == [("A1-W01:P1", at(2026, 11, 5, 10))]
    assert dispatched.replaces_order_id == "A1-W01"
    resumed = decide(district, order, "resume", UNIT, ActionPayload(actor="吴刚", note="材料已到"), _appeal(),
                     at(2026, 11, 5, 10))
    assert isinstance(resumed, Accepted) and not resumed.new_state.paused
    assert resumed.events[0].build().pause.ended_at == at(2026, 11, 5, 10)


def test_a_dispatched_order_cannot_pause_and_the_limit_comes_from_the_configuration():
    district = load_district()
    not_signed = decide(district, _order(status=OrderStatus.dispatched), "pause", UNIT,
                        ActionPayload(actor="吴刚", reason="x"), _appeal(), RECEIVED)
    assert isinstance(not_signed, Refused) and not_signed.reason == "illegal_transition"
    strict = district.model_copy(update={"pauses": district.pauses.model_copy(update={"max_per_order": 0})})
    none_allowed = decide(strict, _order(), "pause", UNIT, ActionPayload(actor="吴刚", reason="x"), _appeal(), RECEIVED)
    assert isinstance(none_allowed, Refused) and none_allowed.rule == "PausesMustNotExceedLimit"


# --- intake: the clock timeline of the appeal's status ----------------------------------------------


def test_the_status_shows_the_clock_timeline_with_each_cause_and_whether_it_is_paused():
    from services.intake.domain import TimelineEntry, clock_timeline
    from shared.contracts import events as ev

    common = {"appeal_id": "A1", "order_id": "A1-W01", "unit_code": UNIT, "unit": "交警"}
    p = pause(1, at(2026, 11, 4, 10), None)
    events = [
        (subjects.DEADLINE_SET, ev.DeadlineSet(occurred_at=RECEIVED, clock="handling", due_at=DUE, cause="started",
                                               **{k: v for k, v in common.items() if k != "unit"})),
        (subjects.ORDER_PAUSED, ev.OrderPaused(occurred_at=at(2026, 11, 4, 10), pause=p, **common)),
        (subjects.ORDER_RESUMED, ev.OrderResumed(occurred_at=at(2026, 11, 6, 10), note="材料已到", **common,
                                                 pause=p.model_copy(update={"ended_at": at(2026, 11, 6, 10)}))),
        (subjects.DEADLINE_WARNING, ev.DeadlineWarning(occurred_at=at(2026, 11, 10, 15, 50), clock="handling",
                                                       due_at=at(2026, 11, 11, 17, 30), level="warning_75",
                                                       reason="most of the time used", late_seconds=300, **common)),
    ]
    entries = [TimelineEntry(f"e{i}", "A1", s, e.occurred_at, "x", "y", e) for i, (s, e) in enumerate(events)]
    clock, paused = clock_timeline(entries[:2])
    assert paused and [c.kind for c in clock] == ["deadline", "paused"]
    assert "补充营业执照" in clock[1].cause
    clock, paused = clock_timeline(entries)
    assert not paused and [c.kind for c in clock] == ["deadline", "paused", "resumed", "warning"]
    assert clock[3].late_seconds == 300 and clock[3].level == "warning_75" and "材料已到" in clock[2].cause
