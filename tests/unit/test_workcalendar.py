"""The official working-day calendar: holidays, make-up days, fallback, overrides and hour clocks."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from shared.workcalendar import WorkCalendar, is_official, known_years

SH = ZoneInfo("Asia/Shanghai")
CAL = WorkCalendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def fallback_count(year: int) -> float:
    return REGISTRY.get_sample_value("coffeetime_calendar_fallback_total", {"year": str(year)}) or 0.0


# --- working days ---------------------------------------------------------------------


def test_the_packaged_calendar_knows_2026():
    assert is_official(2026)
    assert CAL.is_official(2026)
    assert 2026 in known_years()
    assert known_years() == tuple(range(known_years()[0], known_years()[-1] + 1))


def test_a_deadline_across_national_day_counts_the_make_up_saturday():
    due = CAL.add_working_days(at(2026, 9, 30, 10, 0), 5)
    # 8 Oct (Thu) 1, 9 Oct (Fri) 2, 10 Oct (make-up Saturday) 3, 12 Oct (Mon) 4, 13 Oct (Tue) 5
    assert due == at(2026, 10, 13, 17, 30)
    assert due.isoformat() == "2026-10-13T17:30:00+08:00"
    assert CAL.working_days_between(at(2026, 9, 30, 10, 0), due) == 5


def test_national_day_2026_is_off_from_the_first_to_the_seventh():
    assert not any(CAL.is_working_day(date(2026, 10, d)) for d in range(1, 8))
    assert CAL.is_working_day(date(2026, 10, 8))
    assert CAL.is_working_day(date(2026, 9, 30))


def test_spring_festival_2026_is_off_from_15_to_23_february_with_two_make_up_saturdays():
    assert not any(CAL.is_working_day(date(2026, 2, d)) for d in range(15, 24))
    assert CAL.is_working_day(date(2026, 2, 14))  # Saturday, make-up working day
    assert CAL.is_working_day(date(2026, 2, 28))  # Saturday, make-up working day
    assert CAL.is_working_day(date(2026, 2, 24))
    # received on the make-up Saturday: the next working day is after the whole holiday
    assert CAL.add_working_days(at(2026, 2, 14, 11, 0), 1) == at(2026, 2, 24, 17, 30)
    # received on Friday 13 February: the make-up Saturday is the first working day
    assert CAL.add_working_days(at(2026, 2, 13, 16, 0), 1) == at(2026, 2, 14, 17, 30)


def test_a_make_up_saturday_is_a_working_day_and_an_ordinary_saturday_is_not():
    assert date(2026, 10, 10).weekday() == 5
    assert CAL.is_working_day(date(2026, 10, 10))
    assert date(2026, 9, 20).weekday() == 6  # the Sunday made a working day for National Day
    assert CAL.is_working_day(date(2026, 9, 20))
    assert not CAL.is_working_day(date(2026, 10, 17))


def test_the_day_received_is_not_counted_whatever_the_hour():
    assert CAL.add_working_days(at(2026, 3, 9, 8, 0), 1) == at(2026, 3, 10, 17, 30)
    assert CAL.add_working_days(at(2026, 3, 9, 23, 59), 1) == at(2026, 3, 10, 17, 30)
    # received on a Saturday: Monday is the first working day
    assert CAL.add_working_days(at(2026, 3, 14, 10, 0), 1) == at(2026, 3, 16, 17, 30)


def test_zero_working_days_is_close_of_business_of_the_day_or_the_next_working_day():
    assert CAL.add_working_days(at(2026, 3, 9, 10, 0), 0) == at(2026, 3, 9, 17, 30)
    assert CAL.add_working_days(at(2026, 3, 14, 10, 0), 0) == at(2026, 3, 16, 17, 30)
    with pytest.raises(ValueError):
        CAL.add_working_days(at(2026, 3, 9, 10, 0), -1)


def test_inputs_in_any_zone_give_outputs_in_shanghai():
    received_utc = datetime(2026, 9, 30, 2, 0, tzinfo=UTC)  # 10:00 in Chengdu
    due = CAL.add_working_days(received_utc, 5)
    assert due == at(2026, 10, 13, 17, 30)
    assert due.utcoffset() == timedelta(hours=8)
    # 20:00 UTC on Friday 13 March is already Saturday in Chengdu
    assert CAL.add_working_days(datetime(2026, 3, 13, 20, 0, tzinfo=UTC), 1) == at(2026, 3, 16, 17, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_days(datetime(2026, 9, 30, 10, 0), 5)


def test_a_year_the_package_does_not_know_falls_back_to_monday_to_friday_and_says_so(caplog):
    year = 2099
    assert not is_official(year)
    before = fallback_count(year)
    with caplog.at_level(logging.WARNING, logger="coffeetime.calendar"):
        assert CAL.is_working_day(date(year, 1, 1))  # a Thursday; New Year unknown to the fallback
        assert not CAL.is_working_day(date(year, 1, 3))  # Saturday
        assert CAL.add_working_days(datetime(year, 1, 2, 10, 0, tzinfo=SH), 1) == datetime(year, 1, 5, 17, 30, tzinfo=SH)
    warnings = [r for r in caplog.records if r.name == "coffeetime.calendar" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning line per year, not per lookup"
    assert "2099" in warnings[0].getMessage() and "Monday-Friday" in warnings[0].getMessage()
    assert fallback_count(year) >= before + 3


def test_the_override_table_wins_over_the_official_calendar_and_the_fallback(caplog):
    cal = WorkCalendar(
        overrides={
            date(2026, 3, 10): False,  # a local day off (Tuesday)
            "2026-10-17": True,  # an extra working Saturday
            date(2098, 1, 1): False,  # next year's New Year, known before the package knows it
        }
    )
    assert not cal.is_working_day(date(2026, 3, 10))
    assert cal.is_working_day(date(2026, 10, 17))
    assert cal.add_working_days(at(2026, 3, 9, 10, 0), 1) == at(2026, 3, 11, 17, 30)
    before = fallback_count(2098)
    with caplog.at_level(logging.WARNING, logger="coffeetime.calendar"):
        assert not cal.is_working_day(date(2098, 1, 1))
    assert fallback_count(2098) == before, "an override is an answer, not a fallback"
    assert not [r for r in caplog.records if "2098" in r.getMessage()]
    # the shared calendar without overrides is unchanged
    assert CAL.is_working_day(date(2026, 3, 10))


# --- working hours --------------------------------------------------------------------


def test_an_hour_clock_stops_over_lunch():
    assert CAL.add_working_hours(at(2026, 3, 10, 11, 0), 2) == at(2026, 3, 10, 14, 30)
    assert CAL.working_seconds_between(at(2026, 3, 10, 11, 0), at(2026, 3, 10, 14, 30)) == 2 * 3600


def test_an_hour_clock_runs_out_at_the_end_of_a_period_not_after_lunch():
    assert CAL.add_working_hours(at(2026, 3, 10, 9, 0), 3) == at(2026, 3, 10, 12, 0)


def test_an_hour_clock_stops_over_a_weekend():
    # Friday 16:30 + 4 working hours: 1 h on Friday, 3 h on Monday morning
    assert CAL.add_working_hours(at(2026, 3, 13, 16, 30), 4) == at(2026, 3, 16, 12, 0)
    assert CAL.working_seconds_between(at(2026, 3, 13, 16, 30), at(2026, 3, 16, 12, 0)) == 4 * 3600


def test_an_hour_clock_started_out_of_hours_starts_at_the_next_opening():
    assert CAL.add_working_hours(at(2026, 3, 10, 20, 0), 2) == at(2026, 3, 11, 11, 0)
    assert CAL.add_working_hours(at(2026, 3, 10, 12, 45), 1) == at(2026, 3, 10, 14, 30)


def test_an_hour_clock_skips_a_holiday_and_counts_a_make_up_day():
    # Wednesday 30 September 16:00 + 4 h: 1.5 h that day, then 8 October
    assert CAL.add_working_hours(at(2026, 9, 30, 16, 0), 4) == at(2026, 10, 8, 11, 30)
    # Friday 9 October 16:30 + 4 h: the make-up Saturday morning counts
    assert CAL.add_working_hours(at(2026, 10, 9, 16, 30), 4) == at(2026, 10, 10, 12, 0)


def test_counting_hours_backwards_lands_on_the_start_of_a_period():
    assert CAL.add_working_hours(at(2026, 10, 13, 17, 30), -7) == at(2026, 10, 13, 9, 0)
    assert CAL.add_working_hours(at(2026, 10, 8, 10, 0), -2) == at(2026, 9, 30, 16, 30)


def test_working_day_arithmetic_helpers():
    assert CAL.working_day_seconds == 7 * 3600
    assert CAL.is_working_time(at(2026, 3, 10, 9, 0))
    assert not CAL.is_working_time(at(2026, 3, 10, 12, 0))
    assert not CAL.is_working_time(at(2026, 10, 1, 10, 0))
    assert CAL.next_working_day(date(2026, 9, 30)) == date(2026, 10, 8)
    assert CAL.previous_working_day(date(2026, 10, 8)) == date(2026, 9, 30)
    assert CAL.first_counted_moment(at(2026, 9, 30, 10, 0)) == at(2026, 10, 8, 9, 0)
    assert CAL.working_days_between(date(2026, 10, 13), date(2026, 9, 30)) == -5
    assert CAL.working_seconds_between(at(2026, 10, 13, 17, 30), at(2026, 10, 8, 9, 0)) == -35 * 3600


def test_custom_hours_and_close_of_business():
    cal = WorkCalendar(close_of_business=time(18, 0), working_hours=((time(8, 30), time(12, 0)), (time(14, 0), time(18, 0))))
    assert cal.add_working_days(at(2026, 3, 9, 10, 0), 1) == at(2026, 3, 10, 18, 0)
    assert cal.add_working_hours(at(2026, 3, 10, 11, 0), 2) == at(2026, 3, 10, 15, 0)
    with pytest.raises(ValueError):
        WorkCalendar(working_hours=((time(13, 0), time(12, 0)),))


_moments = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 10, 31), timezones=st.just(SH))


@settings(max_examples=60, deadline=None)
@given(start=_moments, minutes=st.integers(min_value=1, max_value=60 * 7 * 15))
def test_adding_working_hours_adds_exactly_that_much_working_time(start, minutes):
    end = CAL.add_working_hours(start, minutes / 60)
    assert end > start
    assert CAL.working_seconds_between(start, end) == pytest.approx(minutes * 60)
    back = CAL.add_working_hours(end, -minutes / 60)
    assert back >= start - timedelta(microseconds=1)
    assert CAL.working_seconds_between(start, back) == pytest.approx(0, abs=1e-3)


@settings(max_examples=60, deadline=None)
@given(start=_moments, days=st.integers(min_value=1, max_value=30))
def test_a_working_day_deadline_is_that_many_working_days_on_at_close_of_business(start, days):
    due = CAL.add_working_days(start, days)
    assert due.time() == time(17, 30) and due.tzinfo == SH
    assert CAL.is_working_day(due)
    assert CAL.working_days_between(start, due) == days
