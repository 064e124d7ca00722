"""Pure rules of follow-up draws, survey files, contradictions and the programme figures."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from services.escalation.domain.figures import (
    AppealFacts,
    EventFacts,
    attendee_role,
    enterprise_key,
    programme_figures,
)
from services.escalation.domain.follow_ups import contradicts, draw_follow_ups, draw_size
from services.escalation.domain.ranking import UnitMonthStats, evaluate_unit
from services.escalation.domain.survey import parse_survey
from shared.contracts import Feedback
from shared.district import district

CLOSED = [f"CT-{n:04d}" for n in range(50)]


def test_the_same_candidates_and_seed_give_the_same_draw_in_any_order():
    first = draw_follow_ups(CLOSED, ["CT-R1"], 0.2, seed=42)
    again = draw_follow_ups(list(reversed(CLOSED)) + CLOSED[:3], ["CT-R1", "CT-R1"], 0.2, seed=42)
    assert first == again
    assert draw_follow_ups(CLOSED, ["CT-R1"], 0.2, seed=43) != first


def test_every_reopened_appeal_is_drawn_and_the_share_rounds_up():
    drawn = draw_follow_ups(CLOSED + ["CT-R1"], ["CT-R1", "CT-R2"], 0.2, seed=1)
    reasons = {d.appeal_id: d.reason for d in drawn}
    assert reasons["CT-R1"] == reasons["CT-R2"] == "reopened"
    assert sum(1 for r in reasons.values() if r == "closed") == 10
    assert [d.appeal_id for d in drawn] == sorted(reasons)
    assert (draw_size(5, 0.2), draw_size(6, 0.2), draw_size(1, 0.01), draw_size(3, 0), draw_size(0, 0.5)) == (1, 2, 1, 0, 0)
    assert draw_size(10, 0.3) == 3, "0.3 × 10 is 3, not 4 (floating point)"
    assert draw_size(4, 1.0) == 4


@pytest.mark.parametrize(("follow_up", "own", "flagged"), [
    ("unsatisfied", "satisfied", True), ("unsatisfied", "basically_satisfied", True),
    ("satisfied", "unsatisfied", True), ("basically_satisfied", "satisfied", False),
    ("unsatisfied", "unsatisfied", False), ("satisfied", None, False), (None, "satisfied", False),
    ("unsatisfied", "not_rated", False),
])
def test_a_follow_up_contradicts_only_pleased_against_unsatisfied(follow_up, own, flagged):
    assert contradicts(follow_up, own) is flagged


def test_feedback_keeps_rating_required_unless_a_follow_up_outcome_is_given():
    assert not Feedback(feedback_id="f1", appeal_id="CT-1", rating="satisfied", via="sms").is_follow_up
    assert Feedback(feedback_id="f2", appeal_id="CT-1", rating="unsatisfied", via="follow_up").is_follow_up
    assert Feedback(feedback_id="f3", appeal_id="CT-1", outcome="no_further_visit").is_follow_up
    for bad in ({}, {"rating": "satisfied", "outcome": "not_done"}, {"outcome": "not_done", "via": "sms"}):
        with pytest.raises(ValidationError):
            Feedback(feedback_id="f4", appeal_id="CT-1", **bad)


def test_a_good_survey_file_reads_english_and_chinese():
    data = ("\ufeff诉求编号,评价,意见,测评人\nCT-1,满意,,甲\n\nCT-2,basically_satisfied,\"说得好, 谢谢\",乙\n"
            "CT-3,不满意,,丙\n").encode()
    rows, errors = parse_survey(data)
    assert errors == []
    assert [(r.line, r.appeal_id, r.rating, r.comment) for r in rows] == [
        (2, "CT-1", "satisfied", None), (4, "CT-2", "basically_satisfied", "说得好, 谢谢"), (5, "CT-3", "unsatisfied", None)]


def test_a_bad_survey_file_names_each_bad_field_with_its_line():
    data = ("appeal_id,rating,comment,surveyor\nCT-1,satisfied,,甲\nCT 2,good,,\nCT-1,satisfied,,甲\nCT-4,satisfied\n"
            ).encode()
    _, errors = parse_survey(data)
    assert [(e.line, e.field) for e in errors] == [(3, "appeal_id"), (3, "rating"), (3, "surveyor"), (4, "appeal_id"),
                                                   (5, "file")]
    assert "already rated on line 2" in errors[3].message
    assert [(e.line, e.field) for e in parse_survey(b"id,score\n1,2\n")[1]] == [(1, "file")]
    assert parse_survey(b"")[1][0].field == "file"
    assert parse_survey("appeal_id,rating,surveyor\nCT-1,满意,甲\n".encode("gbk"))[1][0].message.startswith("not UTF-8")


def test_the_evaluation_shows_follow_up_and_survey_rates_beside_the_own_ones():
    e = evaluate_unit(UnitMonthStats(unit_code="u", month="2031-05", rated=4, satisfied=4, follow_up_rated=2,
                                     follow_up_satisfied=1, follow_up_contradicted=1, survey_rated=3, survey_satisfied=3))
    assert (e.satisfaction_rate, e.follow_up_satisfaction_rate, e.survey_satisfaction_rate) == (1.0, 0.5, 1.0)
    assert evaluate_unit(UnitMonthStats(unit_code="u", month="2031-05")).follow_up_satisfaction_rate is None
    with pytest.raises(ValidationError):
        UnitMonthStats(unit_code="u", month="2031-05", survey_rated=1, survey_satisfied=2)


def test_attendees_count_by_the_district_configuration():
    d = district()
    roles = [(a.role, a.unit_code) for a in map(lambda x: attendee_role(x, d), [
        "区委副书记", "刘建国", "副区长", "区行政审批局局长", "交警大队大队长", "王建军", "记者甲",
        {"name": "某某", "role": "district_leader"}, {"name": "某某", "unit": "人社局"}])]
    assert roles == [("district_leader", None), ("district_leader", None), ("district_leader", None),
                     ("department_head", "approval_bureau"), ("department_head", "traffic_police"),
                     ("department_head", "traffic_police"), ("other", None), ("district_leader", None),
                     ("department_head", "hr_bureau")]
    assert enterprise_key("四川 东航", None) == enterprise_key("四川东航", None) != enterprise_key("四川东航", "91510100MA1")


def test_the_figures_arithmetic_matches_the_headline_of_the_programme():
    """130 appeals at main events, 128 closed: 98.46 %; the published figures' shape."""
    d = district()
    events = [EventFacts(event_id=f"E{n}", kind="main", date=date(2031, 1, 1 + n), organizer_unit="区行政审批局",
                         items=10 if n < 13 else 0, enterprises=(f"name:企业{n}", "name:共同"),
                         attendees=("区委副书记", "区行政审批局局长")) for n in range(15)]
    events.append(EventFacts(event_id="S1", kind="sub", date=date(2031, 1, 20), organizer_unit="区人社局", items=2))
    events.append(EventFacts(event_id="late", kind="main", date=date(2031, 3, 1), organizer_unit="x", items=9))
    appeals = [AppealFacts(appeal_id=f"A{n}", event_kind="main", closed=n < 128,
                           rating=("unsatisfied" if n == 0 else "satisfied") if n < 65 else None) for n in range(130)]
    appeals.append(AppealFacts(appeal_id="S", event_kind="sub", closed=False))
    f = programme_figures(date(2031, 1, 1), date(2031, 1, 31), events, appeals, d)
    assert (f.events_main, f.events_sub, f.enterprises) == (15, 1, 16)
    assert (f.district_leader_attendances, f.department_head_attendances) == (15, 15)
    assert f.main.collected == 130 and f.main.closed == 128 and round(f.main.closure_rate, 4) == 0.9846
    assert (f.main.rated, f.main.satisfied, round(f.main.satisfaction_rate, 4)) == (65, 64, 0.9846)
    assert (f.all.collected, f.all.closed, f.sub.closure_rate) == (132, 128, 0.0)
    assert f.units == ["approval_bureau", "hr_bureau"] and f.units_taking_part == 2
    assert f.unit_participation_rate == round(2 / f.member_units, 6)
    assert "supervision_office" not in f.units
    empty = programme_figures(date(2032, 1, 1), date(2032, 1, 2), events, [], d)
    assert (empty.events_main, empty.main.closure_rate, empty.main.satisfaction_rate) == (0, None, None)
