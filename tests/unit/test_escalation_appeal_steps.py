"""Escalations heard once per appeal (pure): which steps are per appeal, which orders an event names, its id."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.escalation.domain import (
    AppealStep,
    EscalationPolicy,
    OrderFacts,
    appeal_step_event,
    appeal_step_of,
    late_orders,
    plan_order,
    reason_for,
)
from services.escalation.domain.ladder import Firing
from shared.contracts.events import AppealEscalated
from shared.workcalendar import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
APPEAL = "CT-20260930-0001"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def order(suffix: str, unit_code: str, *, role: str = "co", deadline_days: int = 5, **more) -> OrderFacts:
    """An order of APPEAL received 30 September 10:00 and dispatched at 11:00 (5 days: due 13 October 17:30)."""
    return OrderFacts(order_id=f"{APPEAL}-{suffix}", appeal_id=APPEAL, unit_code=unit_code, unit=f"{unit_code}-name",
                      role=role, category="交通出行", summary="东航中心路口左转车道通行不便", source_ref="hotline:CALL-1",
                      correlation_id="corr-1", received_at=at(2026, 9, 30, 10), dispatched_at=at(2026, 9, 30, 11),
                      deadline_days=deadline_days, sign_hours=4, policy=EscalationPolicy().to_dict(), **more)


def planned(*orders: OrderFacts):
    return [(o, plan_order(o, CAL)) for o in orders]


DUE_13 = at(2026, 10, 13, 17, 30)
LEADER_AT = at(2026, 10, 15, 17, 30)  # two working days after 13 October


# --- which steps are heard once per appeal ---------------------------------------------------------


@pytest.mark.parametrize("level", ["district_leader", "supervision"])
def test_the_leader_and_supervision_steps_belong_to_the_appeal(level):
    lead, co = order("01", "traffic_police", role="lead"), order("02", "transport_bureau")
    assert appeal_step_of(lead, level) == appeal_step_of(co, level) == AppealStep(APPEAL, 0, level)


@pytest.mark.parametrize("level", ["warning_75", "warning_1d", "overdue", "difficult"])
def test_warnings_the_overdue_notice_and_a_units_own_request_stay_per_order(level):
    assert appeal_step_of(order("01", "traffic_police"), level) is None


def test_a_reopened_order_is_a_new_round_of_the_same_appeal():
    first, reopened = order("01", "traffic_police"), order("03", "traffic_police", reopen_count=1)
    assert appeal_step_of(reopened, "district_leader") == AppealStep(APPEAL, 1, "district_leader")
    assert appeal_step_of(first, "district_leader") != appeal_step_of(reopened, "district_leader")


def test_an_appeal_steps_event_id_is_stable_and_differs_by_appeal_round_and_level():
    ids = {AppealStep(a, r, lv).event_id for a in ("CT-1", "CT-2") for r in (0, 1) for lv in ("district_leader", "supervision")}
    assert len(ids) == 8
    assert AppealStep("CT-1", 0, "supervision").event_id == AppealStep("CT-1", 0, "supervision").event_id
    assert all(i.startswith("esc-") for i in ids)


# --- which orders an appeal's event names ---------------------------------------------------------


def test_every_order_of_the_appeal_still_open_past_its_deadline_is_named_earliest_first():
    lead = order("01", "traffic_police", role="lead")
    co = order("02", "transport_bureau", deadline_days=6)  # due 14 October 17:30
    late = late_orders(LEADER_AT, {lead.order_id: DUE_13}, planned(co, lead))
    assert [(o.order_id, o.unit_code, o.role) for o in late] == [
        (lead.order_id, "traffic_police", "lead"), (co.order_id, "transport_bureau", "co")]
    assert [o.due_at for o in late] == [DUE_13, at(2026, 10, 14, 17, 30)]
    assert [o.overdue_seconds for o in late] == [2 * 86400, 86400]
    assert late[0].unit == "traffic_police-name"


def test_an_order_replied_not_yet_due_or_not_dispatched_is_not_named():
    lead = order("01", "traffic_police", role="lead")
    replied = order("02", "transport_bureau", replied_at=at(2026, 10, 14, 9))  # late, but replied
    later = order("03", "water_company", deadline_days=10)  # due 20 October: not late yet
    undispatched = OrderFacts(order_id=f"{APPEAL}-04", appeal_id=APPEAL, unit_code="gas_company")
    closed_before = order("05", "gas_company", closed_at=at(2026, 10, 12, 9))
    late = late_orders(LEADER_AT, {lead.order_id: DUE_13}, planned(lead, replied, later, undispatched, closed_before))
    assert [o.order_id for o in late] == [lead.order_id]


def test_an_order_whose_step_fires_is_named_even_if_its_clock_stopped_since():
    # the step fell due, the unit replied a minute later, the scanner got to it after the reply
    lead = order("01", "traffic_police", role="lead", replied_at=LEADER_AT + timedelta(minutes=1))
    late = late_orders(LEADER_AT + timedelta(minutes=5), {lead.order_id: DUE_13}, planned(lead))
    assert [(o.order_id, o.overdue_seconds) for o in late] == [(lead.order_id, 2 * 86400 + 300)]


def test_orders_with_the_same_deadline_are_listed_by_order_id():
    a, b = order("02", "transport_bureau"), order("01", "traffic_police", role="lead")
    late = late_orders(LEADER_AT, {a.order_id: DUE_13, b.order_id: DUE_13}, planned(a, b))
    assert [o.order_id for o in late] == [b.order_id, a.order_id]


def test_an_order_that_fires_must_be_one_of_the_appeals_orders():
    with pytest.raises(ValueError, match="not among the appeal's orders"):
        late_orders(LEADER_AT, {"CT-OTHER-01": DUE_13}, planned(order("01", "traffic_police")))


# --- the event -------------------------------------------------------------------------------------


def _event(level: str, *orders: OrderFacts, now: datetime = LEADER_AT) -> AppealEscalated:
    step = AppealStep(APPEAL, 0, level)
    late = late_orders(now, {orders[0].order_id: DUE_13}, planned(*orders))
    return appeal_step_event(step, orders[0], late, [{"role": "district_leader", "name": "刘建国", "unit_code": None}], now)


def test_one_event_names_every_late_order_and_repeats_the_first_in_its_own_fields():
    lead, co = order("01", "traffic_police", role="lead"), order("02", "transport_bureau", deadline_days=6)
    event = _event("district_leader", co, lead)
    assert event.event_id == AppealStep(APPEAL, 0, "district_leader").event_id
    assert event.level == "district_leader" and event.clock == "handling" and event.appeal_id == APPEAL
    assert [o.order_id for o in event.late_orders] == [lead.order_id, co.order_id]
    first = event.late_orders[0]
    assert (event.order_id, event.unit_code, event.unit, event.due_at, event.overdue_seconds) == (
        first.order_id, first.unit_code, first.unit, first.due_at, first.overdue_seconds)
    assert event.summary == lead.summary and event.correlation_id == "corr-1" and event.source_ref == "hotline:CALL-1"
    assert [(t.role, t.name) for t in event.targets] == [("district_leader", "刘建国")]
    assert event.reason.startswith("2 work orders past their handling deadlines (the earliest 2026-10-13 17:30)")
    assert "district leader" in event.reason


def test_a_single_late_order_gives_the_reason_of_its_own_step():
    lead = order("01", "traffic_police", role="lead")
    event = _event("supervision", lead, now=at(2026, 10, 20, 17, 30))
    assert [o.order_id for o in event.late_orders] == [lead.order_id]
    assert event.reason == reason_for(Firing("supervision", DUE_13, "handling", DUE_13))


def test_an_appeal_step_without_a_late_order_is_refused():
    with pytest.raises(ValueError, match="at least the order"):
        appeal_step_event(AppealStep(APPEAL, 0, "district_leader"), order("01", "traffic_police"), [], [], LEADER_AT)


def test_the_event_round_trips_through_json_with_its_late_orders():
    lead, co = order("01", "traffic_police", role="lead"), order("02", "transport_bureau")
    event = _event("district_leader", lead, co)
    again = AppealEscalated.model_validate_json(event.model_dump_json())
    assert again == event and len(again.late_orders) == 2
    # an event without the field (an older producer) still parses: it names no list
    assert AppealEscalated.model_validate_json(event.model_dump_json(exclude={"late_orders"})).late_orders == []
