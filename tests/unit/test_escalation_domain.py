"""Escalation rules: the ladder plan, who hears each step, which events stop clocks, unit evaluation and ranking."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.escalation.domain.clock_changes import cancelled_levels, clock_change
from services.escalation.domain.events import stable_event_id
from services.escalation.domain.ladder import (
    LADDER,
    Firing,
    Ladders,
    firings_due,
    overdue_seconds,
    plan_firings,
    reason_for,
)
from services.escalation.domain.order_clock import OrderFacts, handling_due_at, plan_order, sign_for_due_at
from services.escalation.domain.policy import URGENT_POLICY, EscalationPolicy, PolicyTable
from services.escalation.domain.ranking import EvaluationWeights, UnitMonthStats, evaluate_unit, rank_units
from services.escalation.domain.recipients import targets_for
from shared.contracts.events import Person
from shared.district import District
from shared.workcalendar import WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()
DEFAULT = EscalationPolicy()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def times(plan: list[Firing]) -> dict[str, datetime]:
    return {f.level: f.fire_at for f in plan}


@pytest.fixture(scope="module")
def district() -> District:
    return District.model_validate(
        {
            "name": "双流区",
            "units": [
                {
                    "unit_code": "approval_bureau",
                    "name": "区行政审批局",
                    "kind": "lead",
                    "head": {"name": "李局长"},
                    "liaisons": [{"name": "周联络"}],
                },
                {"unit_code": "supervision_office", "name": "区委区政府督查室", "kind": "supervision", "head": {"name": "赵主任"}},
                {
                    "unit_code": "traffic_police",
                    "name": "区公安分局交警大队",
                    "kind": "bureau",
                    "head": {"name": "王大队长"},
                    "liaisons": [{"name": "张联络"}, {"name": "刘联络"}],
                },
                {"unit_code": "water_company", "name": "自来水公司", "kind": "utility"},
            ],
            "leaders": [
                {"leader_id": "deputy_traffic", "name": "陈副区长", "title": "副区长", "contact": {"name": "陈副区长"}, "categories": ["交通出行"]},
                {"leader_id": "executive", "name": "黄常务", "title": "常务副区长", "contact": {"name": "黄常务"}},
            ],
            "categories": [
                {"name": "交通出行", "code": "traffic", "deadline_days": 5, "sign_hours": 2, "default_unit": "traffic_police"},
                {"name": "水电气保障", "code": "utilities", "deadline_days": 5, "sign_hours": 2},
            ],
        }
    )


# --- deadlines and the ladder -----------------------------------------------------------


def test_the_plan_for_a_5_day_clock_across_national_day():
    received = at(2026, 9, 30, 10, 0)
    due = handling_due_at(received, 5, CAL)
    assert due == at(2026, 10, 13, 17, 30)
    plan = plan_firings("handling", received, due, DEFAULT, CAL)
    assert [f.level for f in plan] == list(LADDER)
    assert times(plan) == {
        # 35 working hours allowed from 8 Oct 09:00; 75 % = 26.25 h → 3 days + 5.25 h
        "warning_75": at(2026, 10, 12, 15, 45),
        # one working day left: the opening of the last day
        "warning_1d": at(2026, 10, 13, 9, 0),
        "overdue": at(2026, 10, 13, 17, 30),
        # 2 working days after the deadline
        "district_leader": at(2026, 10, 15, 17, 30),
        # 3 more working days: Fri 16, Mon 19, Tue 20
        "supervision": at(2026, 10, 20, 17, 30),
    }
    assert all(f.clock == "handling" and f.due_at == due for f in plan)
    assert all(f.fire_at.utcoffset() == timedelta(hours=8) for f in plan)


def test_an_extension_moves_the_deadline_by_the_total_granted_and_the_plan_follows():
    received = at(2026, 9, 30, 10, 0)
    due = handling_due_at(received, 5, CAL, extension_days=3)
    assert due == at(2026, 10, 16, 17, 30)
    # the same total, redelivered, gives the same deadline
    assert handling_due_at(received, 5, CAL, extension_days=3) == due
    replanned = plan_firings("handling", received, due, DEFAULT, CAL)
    assert times(replanned)["overdue"] == due
    old = plan_firings("handling", received, at(2026, 10, 13, 17, 30), DEFAULT, CAL)
    assert {f.key for f in replanned}.isdisjoint({f.key for f in old})


def test_the_one_day_warning_is_dropped_when_it_coincides_with_the_75_percent_warning():
    received = at(2026, 9, 30, 10, 0)
    due = handling_due_at(received, 4, CAL)  # 12 Oct 17:30; 75 % of 4 days is exactly 3 days
    plan = plan_firings("handling", received, due, DEFAULT, CAL)
    assert [f.level for f in plan] == ["warning_75", "overdue", "district_leader", "supervision"]
    # Saturday 10 October (make-up) 17:30 is the same working moment as Monday 09:00
    assert times(plan)["warning_75"] == at(2026, 10, 10, 17, 30)


def test_the_one_day_warning_is_dropped_when_it_lies_at_the_start_of_a_one_day_clock():
    received = at(2026, 3, 9, 15, 0)
    due = handling_due_at(received, 1, CAL)
    assert due == at(2026, 3, 10, 17, 30)
    plan = plan_firings("handling", received, due, DEFAULT, CAL)
    assert [f.level for f in plan] == ["warning_75", "overdue", "district_leader", "supervision"]
    assert times(plan)["warning_75"] == at(2026, 3, 10, 15, 45)


def test_on_a_two_day_clock_the_one_day_warning_comes_before_the_75_percent_one():
    received = at(2026, 3, 9, 15, 0)
    plan = plan_firings("handling", received, handling_due_at(received, 2, CAL), DEFAULT, CAL)
    assert [(f.level, f.fire_at) for f in plan][:2] == [
        ("warning_1d", at(2026, 3, 11, 9, 0)),
        ("warning_75", at(2026, 3, 11, 14, 0)),
    ]


def test_the_sign_for_clock_only_reports_a_late_signature():
    dispatched = at(2026, 3, 13, 16, 30)
    due = sign_for_due_at(dispatched, 2, CAL)
    assert due == at(2026, 3, 16, 10, 0)  # Friday 1 h, Monday 1 h
    plan = plan_firings("sign_for", dispatched, due, DEFAULT, CAL)
    assert [(f.level, f.fire_at, f.clock) for f in plan] == [("overdue", due, "sign_for")]


def test_urgent_appeals_escalate_sooner():
    received = at(2026, 9, 30, 10, 0)
    due = handling_due_at(received, 5, CAL)
    plan = times(plan_firings("handling", received, due, URGENT_POLICY, CAL))
    assert plan["warning_75"] == at(2026, 10, 10, 14, 0)  # half of 35 h: 17.5 h
    assert plan["district_leader"] == at(2026, 10, 14, 17, 30)
    assert plan["supervision"] == at(2026, 10, 15, 17, 30)


def test_a_policy_with_zero_days_puts_the_leader_step_at_the_deadline_in_ladder_order():
    policy = EscalationPolicy(warning_days_before=0, leader_after_days=0, supervision_after_days=0)
    received = at(2026, 3, 9, 10, 0)
    due = handling_due_at(received, 3, CAL)
    plan = plan_firings("handling", received, due, policy, CAL)
    assert [f.level for f in plan] == ["warning_75", "overdue", "district_leader", "supervision"]
    assert {f.fire_at for f in plan[1:]} == {due}


def test_a_backlog_appeal_fires_its_whole_ladder_at_once_lowest_first_each_once():
    received = at(2026, 9, 1, 10, 0)
    due = handling_due_at(received, 5, CAL)
    plan = plan_firings("handling", received, due, DEFAULT, CAL)
    now = at(2026, 11, 2, 9, 0)  # dispatched long after the deadline
    assert all(f.fire_at < now for f in plan)
    due_now = firings_due(plan, now)
    assert [f.level for f in due_now] == list(LADDER)
    # the scanner records the keys it fired; nothing fires twice
    assert firings_due(plan, now, already_fired=[f.key for f in due_now]) == []
    # half-way along the ladder only the steps whose time has come fire
    partial = firings_due(plan, times(plan)["district_leader"])
    assert [f.level for f in partial] == ["warning_75", "warning_1d", "overdue", "district_leader"]
    assert overdue_seconds(due, now) == int((now - due).total_seconds())
    assert overdue_seconds(due, received) == 0
    assert "missed" in reason_for(due_now[2])


def test_an_unknown_clock_or_a_naive_time_is_refused():
    with pytest.raises(ValueError):
        plan_firings("lunch", at(2026, 3, 9), at(2026, 3, 10), DEFAULT, CAL)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan_firings("handling", datetime(2026, 3, 9), at(2026, 3, 10), DEFAULT, CAL)


UTC = ZoneInfo("UTC")
CAL_2026 = WorkCalendar()  # its own: the fallback years the examples touch are counted on it alone


@st.composite
def dispatched_orders(draw, n: int) -> list[OrderFacts]:
    """``n`` dispatched orders, many received on the same days (as in one batch), some stopped or extended."""
    days = draw(st.lists(st.dates(min_value=at(2025, 12, 20).date(), max_value=at(2027, 1, 10).date()),
                         min_size=1, max_size=4))
    orders = []
    for i in range(n):
        day = draw(st.sampled_from(days))
        received = datetime.combine(day, datetime.min.time(), tzinfo=SH) + timedelta(
            seconds=draw(st.integers(0, 86_399)))
        dispatched = received + timedelta(seconds=draw(st.sampled_from([0, 1, 3_600, 90_000])))
        urgent = draw(st.booleans())
        orders.append(OrderFacts(
            order_id=f"O{i}", appeal_id=f"A{i}", unit_code="traffic_police",
            received_at=received.astimezone(draw(st.sampled_from([SH, UTC]))), dispatched_at=dispatched,
            deadline_days=draw(st.sampled_from([0, 1, 2, 5, 15])), sign_hours=draw(st.sampled_from([0.5, 2, 4, 24])),
            policy=(URGENT_POLICY if urgent else DEFAULT).to_dict(), urgent=urgent,
            extension_days=draw(st.sampled_from([0, 0, 3])), reopen_count=draw(st.sampled_from([0, 0, 1])),
            replied_at=draw(st.sampled_from([None, None, dispatched + timedelta(days=3)])),
        ))
    return orders


@settings(max_examples=200, deadline=None)
@given(dispatched_orders(12))
def test_a_batch_planning_its_orders_on_shared_ladders_gets_the_plans_of_each_order_alone(orders):
    ladders = Ladders(CAL_2026)
    together = [plan_order(facts, CAL_2026, ladders) for facts in orders]
    alone = [plan_order(facts, CAL_2026) for facts in orders]
    assert together == alone
    assert [[f.key for f in p.steps] for p in together] == [[f.key for f in p.steps] for p in alone]
    assert len(ladders.handling) <= len(orders)


def test_ladders_planned_on_one_calendar_are_refused_on_another():
    ladders = Ladders(WorkCalendar())
    with pytest.raises(ValueError, match="another calendar"):
        plan_firings("handling", at(2026, 3, 9, 10), at(2026, 3, 16, 17, 30), DEFAULT, CAL, ladders)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_an_event_id_is_the_uuid5_of_its_parts_as_it_always_was(parts):
    # ids of events staged by an earlier version must come out the same: JetStream drops the repeat by them
    namespace = uuid.UUID("5b0f3a8e-7c1d-4e44-9a51-2f6c0d7e9b13")
    assert stable_event_id(*parts) == "esc-" + uuid.uuid5(namespace, "\x1f".join(parts)).hex


# --- policies ------------------------------------------------------------------------


def test_the_policy_round_trips_through_the_order_snapshot():
    assert DEFAULT.to_dict() == {
        "warning_fraction": 0.75,
        "warning_days_before": 1,
        "leader_after_days": 2,
        "supervision_after_days": 3,
    }
    assert EscalationPolicy.from_dict(URGENT_POLICY.to_dict()) == URGENT_POLICY
    assert EscalationPolicy.from_dict({}) == DEFAULT
    with pytest.raises(ValidationError):
        EscalationPolicy(warning_fraction=1.2)


def test_the_policy_table_layers_category_and_urgency(district):
    table = PolicyTable.model_validate(
        {
            "categories": {
                "traffic": {"leader_after_days": 4, "urgent": {"supervision_after_days": 2}},
                "水电气保障": {"warning_fraction": 0.6},
            }
        }
    )
    assert table.policy_for(None, urgent=False) == DEFAULT
    assert table.policy_for("其他", urgent=True) == URGENT_POLICY
    assert table.policy_for("traffic", urgent=False).leader_after_days == 4
    urgent_traffic = table.policy_for("traffic", urgent=True)
    assert (urgent_traffic.leader_after_days, urgent_traffic.supervision_after_days) == (1, 2)
    # a category named rather than coded finds its override through the district
    assert table.policy_for("交通出行", urgent=False, district=district).leader_after_days == 4
    assert table.policy_for("utilities", urgent=False, district=district).warning_fraction == 0.6
    assert table.policy_for("utilities", urgent=False).warning_fraction == 0.75


# --- who hears ----------------------------------------------------------------------


def test_warnings_go_to_the_unit_liaisons(district):
    expected = [
        {"role": "liaison", "name": "张联络", "unit_code": "traffic_police"},
        {"role": "liaison", "name": "刘联络", "unit_code": "traffic_police"},
    ]
    assert targets_for("warning_75", "traffic_police", district, "交通出行") == expected
    assert targets_for("warning_1d", "traffic_police", district, "交通出行") == expected


def test_a_unit_without_liaisons_or_head_is_told_as_a_unit(district):
    assert targets_for("warning_75", "water_company", district, None) == [
        {"role": "liaison", "name": "自来水公司", "unit_code": "water_company"}
    ]
    assert targets_for("overdue", "water_company", district, None)[0] == {
        "role": "unit_head",
        "name": "自来水公司",
        "unit_code": "water_company",
    }


def test_an_overdue_order_goes_to_the_unit_head_and_the_lead_unit(district):
    assert targets_for("overdue", "traffic_police", district, "交通出行") == [
        {"role": "unit_head", "name": "王大队长", "unit_code": "traffic_police"},
        {"role": "lead_unit", "name": "李局长", "unit_code": "approval_bureau"},
    ]


def test_a_late_signature_goes_to_the_lead_unit_and_the_liaisons(district):
    people = targets_for("overdue", "traffic_police", district, "交通出行", clock="sign_for")
    assert [p["role"] for p in people] == ["lead_unit", "liaison", "liaison"]


def test_the_district_leader_is_the_one_for_the_category(district):
    leader = {"role": "district_leader", "name": "陈副区长", "unit_code": None}
    assert targets_for("district_leader", "traffic_police", district, "交通出行") == [leader]
    assert targets_for("district_leader", "traffic_police", district, "traffic") == [leader]
    assert targets_for("district_leader", "water_company", district, "水电气保障") == [
        {"role": "district_leader", "name": "黄常务", "unit_code": None}
    ]


def test_supervision_goes_to_the_supervision_office(district):
    assert targets_for("supervision", "traffic_police", district, "交通出行") == [
        {"role": "supervision_office", "name": "赵主任", "unit_code": "supervision_office"}
    ]


def test_a_difficult_appeal_goes_to_the_district_leader_at_once(district):
    people = targets_for("difficult", "traffic_police", district, "交通出行")
    assert people[0] == {"role": "district_leader", "name": "陈副区长", "unit_code": None}
    assert people[1]["role"] == "lead_unit"
    assert clock_change("ct.order.escalation_requested").escalate_now == "difficult"


def test_targets_fit_the_person_contract(district):
    for level in ("warning_75", "overdue", "district_leader", "supervision", "difficult"):
        for person in targets_for(level, "traffic_police", district, "交通出行"):
            assert Person.model_validate(person).model_dump() == person


def test_without_leaders_the_lead_unit_hears_in_their_place(district):
    bare = district.model_copy(update={"leaders": []})
    assert targets_for("district_leader", "traffic_police", bare, "交通出行") == [
        {"role": "lead_unit", "name": "李局长", "unit_code": "approval_bureau"}
    ]


def test_an_unknown_unit_is_an_error(district):
    with pytest.raises(KeyError):
        targets_for("overdue", "nobody", district, None)


# --- which events stop which clocks ---------------------------------------------------


def test_signing_stops_only_the_sign_for_clock():
    assert cancelled_levels("ct.order.signed", "sign_for") == set(LADDER)
    assert cancelled_levels("ct.order.signed", "handling") == set()


def test_replying_or_closing_stops_the_handling_clock():
    for event in ("ct.order.replied", "ct.appeal.closed", "appeal.merged"):
        assert clock_change(event).stops == {"sign_for", "handling"}
        assert cancelled_levels(event, "handling") == set(LADDER)


def test_an_extension_and_a_reopening_replan_the_handling_clock():
    for event in ("ct.order.extension_granted", "ct.appeal.reopened"):
        change = clock_change(event)
        assert change.replans == {"handling"} and not change.stops
        assert change.cancels("handling") and not change.cancels("sign_for")


def test_a_dispatch_starts_both_clocks_and_other_events_change_nothing():
    assert clock_change("ct.order.dispatched").replans == {"sign_for", "handling"}
    for event in ("ct.order.progressed", "ct.order.extension_requested", "ct.order.extension_denied", "ct.appeal.rated"):
        assert clock_change(event) == clock_change("nothing")
        assert cancelled_levels(event, "handling") == set()


def test_a_return_stops_the_sign_for_clock_and_an_accepted_return_ends_the_order():
    assert clock_change("ct.order.returned").stops == {"sign_for"}
    assert clock_change("ct.order.return_decided", accepted=True).stops == {"sign_for", "handling"}
    assert not clock_change("ct.order.return_decided", accepted=False).cancels("handling")


# --- evaluation and ranking ----------------------------------------------------------


def stats(unit: str, **counts: int) -> UnitMonthStats:
    return UnitMonthStats(unit_code=unit, month="2026-10", **counts)


def test_a_unit_month_gives_its_rates():
    e = evaluate_unit(
        stats(
            "traffic_police",
            received=20,
            signed_on_time=18,
            due=16,
            closed=15,
            closed_on_time=12,
            replied=16,
            rated=10,
            satisfied=7,
            basically_satisfied=2,
            returned=2,
            reopened=1,
            overdue=4,
            noticed=1,
        )
    )
    assert e.closure_rate == pytest.approx(15 / 16)
    assert e.satisfaction_rate == pytest.approx(0.9)
    assert e.on_time_rate == pytest.approx(0.75)
    assert e.sign_on_time_rate == pytest.approx(0.9)
    assert e.return_rate == pytest.approx(0.1)
    assert e.reopen_rate == pytest.approx(1 / 16)
    assert (e.overdue, e.noticed, e.satisfied_or_basically) == (4, 1, 9)
    # 100 × (0.35·0.9375 + 0.35·0.9 + 0.2·0.75 + 0.1·0.9) − 5·0.1 − 10·0.0625 − 2·1
    expected = 100 * (0.35 * 15 / 16 + 0.35 * 0.9 + 0.2 * 0.75 + 0.1 * 0.9) - 0.5 - 0.625 - 2
    assert e.score == pytest.approx(round(expected, 2))


def test_zero_denominators_give_no_rate_and_the_score_uses_the_rest():
    e = evaluate_unit(stats("water_company", received=6, signed_on_time=6, due=3, closed=3, closed_on_time=3))
    assert e.satisfaction_rate is None and e.reopen_rate is None
    assert e.return_rate == 0
    assert e.score == 100.0
    empty = evaluate_unit(stats("idle"))
    assert (empty.closure_rate, empty.satisfaction_rate, empty.on_time_rate, empty.return_rate, empty.score) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_month_stats_refuse_impossible_counts():
    with pytest.raises(ValidationError):
        stats("x", due=2, closed=3)
    with pytest.raises(ValidationError):
        stats("x", rated=2, satisfied=2, basically_satisfied=1)
    with pytest.raises(ValidationError):
        UnitMonthStats(unit_code="x", month="2026-13")


def test_the_ranking_orders_by_score_shares_ties_and_lists_small_units_unranked():
    evaluations = [
        evaluate_unit(stats("b_unit", received=10, signed_on_time=10, due=10, closed=9, closed_on_time=9)),
        evaluate_unit(stats("a_unit", received=10, signed_on_time=10, due=10, closed=9, closed_on_time=9)),
        evaluate_unit(stats("best", received=12, signed_on_time=12, due=10, closed=10, closed_on_time=10)),
        evaluate_unit(stats("late", received=10, signed_on_time=5, due=10, closed=6, closed_on_time=2, noticed=2)),
        evaluate_unit(stats("tiny", received=2, signed_on_time=2, due=2, closed=2, closed_on_time=2)),
        evaluate_unit(stats("idle")),
    ]
    ranking = rank_units(evaluations, EvaluationWeights(), min_orders=5)
    assert [(r.rank, r.evaluation.unit_code) for r in ranking.rows] == [
        (1, "best"),
        (2, "a_unit"),
        (2, "b_unit"),
        (4, "late"),
        (None, "idle"),
        (None, "tiny"),
    ]
    tiny = ranking.rows[-1]
    assert tiny.score == 100.0 and "fewer than 5" in tiny.note
    text = ranking.render()
    assert ranking.formula in text and "score = 100" in ranking.formula
    assert "fewer than 5 orders" in text


def test_the_weights_come_from_configuration_and_change_the_order():
    fast_but_unloved = evaluate_unit(
        stats("fast", received=10, signed_on_time=10, due=10, closed=10, closed_on_time=10, rated=10, satisfied=5)
    )
    slow_but_loved = evaluate_unit(
        stats("loved", received=10, signed_on_time=6, due=10, closed=8, closed_on_time=6, rated=10, satisfied=10)
    )
    by_default = rank_units([fast_but_unloved, slow_but_loved])
    assert [r.evaluation.unit_code for r in by_default.rows] == ["fast", "loved"]
    satisfaction_first = EvaluationWeights(closure=0.1, satisfaction=0.8, on_time=0.1, sign_on_time=0)
    reweighted = rank_units([fast_but_unloved, slow_but_loved], satisfaction_first, min_orders=5)
    assert [r.evaluation.unit_code for r in reweighted.rows] == ["loved", "fast"]
    assert "0.8" in reweighted.formula
    with pytest.raises(ValidationError):
        EvaluationWeights(closure=0, satisfaction=0, on_time=0, sign_on_time=0)
