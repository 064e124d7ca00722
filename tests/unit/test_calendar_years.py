"""A year's State Council schedule: checked whole on load, and consulted before chinese-calendar."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.escalation.domain import (
    OrderFacts,
    ScheduleInvalid,
    deadline_moved_event,
    document_of,
    parse_year,
    pending_moves,
    plan_order,
)
from shared.workcalendar import OfficialYear, WorkCalendar

SH = ZoneInfo("Asia/Shanghai")
EXAMPLE = Path(__file__).parents[2] / "services" / "escalation" / "calendars" / "2027.example.yaml"

GOOD = """
year: 2027
source: test schedule
holidays:
  - name: 元旦
    dates: [2027-01-01]
  - name: 春节
    from: 2027-02-05
    to: 2027-02-11
workdays:
  - {date: 2027-02-13, for: 春节}
"""


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ScheduleInvalid) as caught:
        parse_year(text)
    return [(p.field, p.rule) for p in caught.value.problems]


# --- checked on load --------------------------------------------------------------------


def test_a_good_file_gives_its_holidays_and_make_up_days():
    year = parse_year(GOOD)
    assert year.year == 2027 and year.source == "test schedule"
    assert year.holidays[date(2027, 1, 1)] == "元旦"
    assert [d.day for d in year.holidays if d.month == 2] == [5, 6, 7, 8, 9, 10, 11]
    assert year.workdays == {date(2027, 2, 13): "春节"}


def test_json_is_read_as_well_and_the_same_schedule_has_the_same_digest():
    as_json = json.dumps({"year": 2027, "source": "test schedule",
                          "holidays": [{"name": "元旦", "dates": ["2027-01-01"]},
                                       {"name": "春节", "dates": [f"2027-02-{d:02d}" for d in range(5, 12)]}],
                          "workdays": [{"date": "2027-02-13", "for": "春节"}]})
    assert parse_year(as_json).digest == parse_year(GOOD).digest
    assert parse_year(json.dumps(document_of(parse_year(GOOD)))).digest == parse_year(GOOD).digest


def test_every_bad_entry_is_named_with_its_rule():
    found = problems("""
year: 2027
holidays:
  - name: 元旦
    dates: [2027-01-01, 2028-01-01]
  - name: 春节
    from: 2027-02-10
    to: 2027-02-05
  - name: 另一个
    dates: [2027-01-01]
  - name: 无日期
workdays:
  - date: 2027-01-01
  - date: 2027-02-10
  - date: 2026-12-26
""")
    assert found == [
        ("holidays[0].dates[1]", "year_range"),
        ("holidays[1].to", "from_before_to"),
        ("holidays[2].dates[0]", "holiday_once"),
        ("holidays[3]", "dates_or_range"),
        ("workdays[0].date", "not_both"),
        ("workdays[1].date", "workday_on_weekend"),
        ("workdays[2].date", "year_range"),
    ]


def test_a_make_up_day_on_a_weekday_says_which_weekday():
    with pytest.raises(ScheduleInvalid) as caught:
        parse_year("year: 2027\nholidays: [{name: 元旦, dates: [2027-01-01]}]\nworkdays: [{date: 2027-02-10}]\n")
    assert "2027-02-10 is a Wednesday" in str(caught.value)


def test_no_holidays_unknown_fields_and_bad_types_are_refused():
    assert problems("year: 2027\nholidays: []\n") == [("holidays", "holidays_not_empty")]
    assert ("bogus", "shape") in problems('{"year": 2027, "holidays": [], "bogus": 1}')
    assert ("holidays[0].dates[0]", "shape") in problems("year: 2027\nholidays: [{name: x, dates: [not-a-date]}]\n")
    assert problems("year: 1999\nholidays: [{name: x, dates: [1999-01-01]}]\n") == [("year", "shape")]


def test_what_is_not_a_schedule_file_is_one_error_for_the_file():
    assert problems("- just\n- a list\n") == [("file", "readable")]
    assert problems("year: [unclosed\n") == [("file", "readable")]
    with pytest.raises(ScheduleInvalid) as caught:
        parse_year(b"\xff\xfe")
    assert caught.value.problems[0].field == "file"


def test_the_shipped_example_is_valid_and_says_it_is_an_example():
    text = EXAMPLE.read_text(encoding="utf-8")
    year = parse_year(text)
    assert year.year == 2027 and year.holidays[date(2027, 1, 1)] == "元旦"
    assert "EXAMPLE" in year.source and "NOT THE OFFICIAL" in text


# --- the lookup order ---------------------------------------------------------------------


def test_a_loaded_year_is_consulted_before_the_package_and_the_override_before_both():
    # 2026 is in chinese-calendar: 1 October is off. A loaded 2026 saying otherwise wins; an override wins over it.
    loaded = OfficialYear(2026, holidays={date(2026, 10, 8): "测试"}, workdays={date(2026, 10, 10): ""})
    cal = WorkCalendar(loaded_years=[loaded])
    assert cal.source_of(2026) == "loaded"
    assert cal.is_working_day(date(2026, 10, 1))  # the package says off; the loaded year does not list it
    assert not cal.is_working_day(date(2026, 10, 8))
    with_override = WorkCalendar({date(2026, 10, 8): True}, loaded_years=[loaded])
    assert with_override.is_working_day(date(2026, 10, 8))


def test_a_year_neither_knows_is_unknown_and_falls_back_to_monday_to_friday():
    cal = WorkCalendar()
    assert cal.source_of(2026) == "package" and cal.knows(2026)
    assert cal.source_of(2027) == "unknown" and not cal.knows(2027)
    # the example: received Friday 2026-12-25 with 5 working days
    assert cal.add_working_days(at(2026, 12, 25, 10), 5) == at(2027, 1, 1, 17, 30)


def test_loading_2027_moves_the_new_year_deadline_past_the_holiday():
    cal = WorkCalendar()
    before = cal.add_working_days(at(2026, 12, 25, 10), 5)
    assert cal.set_loaded_years([parse_year(GOOD)]) is True
    assert cal.source_of(2027) == "loaded"
    assert cal.add_working_days(at(2026, 12, 25, 10), 5) == at(2027, 1, 4, 17, 30)
    assert cal.set_loaded_years([parse_year(GOOD)]) is False, "the same schedule again changes nothing"
    assert cal.set_loaded_years([]) is True and cal.add_working_days(at(2026, 12, 25, 10), 5) == before


def test_a_dry_run_calendar_leaves_the_original_alone():
    cal = WorkCalendar()
    trial = cal.with_year(parse_year(GOOD))
    assert trial.source_of(2027) == "loaded" and cal.source_of(2027) == "unknown"
    # the make-up Saturday counts; the Spring Festival does not
    assert trial.add_working_days(at(2027, 2, 4, 10), 1) == at(2027, 2, 12, 17, 30)
    assert trial.add_working_days(at(2027, 2, 12, 10), 1) == at(2027, 2, 13, 17, 30)


# --- what a revised calendar moves ---------------------------------------------------------


def _order() -> OrderFacts:
    return OrderFacts(order_id="WO-1", appeal_id="CT-1", unit_code="traffic_police", unit="区交警大队",
                      received_at=at(2026, 12, 25, 10), dispatched_at=at(2026, 12, 25, 10, 30), deadline_days=5,
                      sign_hours=4, policy=None, summary="路口")


def test_the_moves_of_a_revised_calendar_say_from_to_and_by_how_much():
    facts = _order()
    old = plan_order(facts, WorkCalendar())
    published = {"sign_for": old.sign_due, "handling": old.handling_due}
    revised = WorkCalendar(loaded_years=[parse_year(GOOD)])
    moves = pending_moves(facts, plan_order(facts, revised), published, revised)
    assert [(m.clock, m.previous_due, m.due, m.working_days, m.calendar_days) for m in moves] == [
        ("handling", at(2027, 1, 1, 17, 30), at(2027, 1, 4, 17, 30), 1, 3)]
    assert "2027-01-01 17:30 -> 2027-01-04 17:30  +1 working day(s), +3 calendar day(s)" in moves[0].line()
    # once published, nothing moves any more
    assert pending_moves(facts, plan_order(facts, revised), {"sign_for": old.sign_due,
                                                             "handling": moves[0].due}, revised) == []
    first = deadline_moved_event(moves[0], facts, "2027 loaded", at(2026, 12, 28, 9))
    again = deadline_moved_event(moves[0], facts, "2027 loaded", at(2026, 12, 28, 10))
    assert first.event_id == again.event_id and first.previous_due_at == at(2027, 1, 1, 17, 30)
