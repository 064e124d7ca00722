"""The official working-day calendar (工作日) and the arithmetic of deadlines on it.

Working days follow the official Chinese calendar as published by the State
Council each year and packaged by ``chinese_calendar``: statutory holidays are
off, and the weekend days that are made working days to make up for a holiday
(调休) are working. A local override table applies on top of it (a district
may declare a day off for a local event, or fill in next year's holidays before
the package knows them).

A year the package does not know (it raises ``NotImplementedError``) falls back
to Monday–Friday and says so: one warning log line per year and process on the
``coffeetime.calendar`` logger, and the Prometheus counter
``coffeetime_calendar_fallback_total{year=...}``, which counts every working-day
decision that had to use the fallback.

Two kinds of clock are counted here:

* working days (the handling deadline, 办理时限): the Chinese civil rule — the
  day the appeal was received is not counted; the deadline falls at close of
  business (17:30 Asia/Shanghai by default) of the last working day;
* working hours (the sign-for limit, 签收时限): only time inside working hours
  (09:00–12:00 and 13:30–17:30 by default) on working days counts, so a clock
  stops over lunch, at night, at weekends and on holidays.

Every input may be in any time zone (naive datetimes are refused); every
output is in the calendar's zone, Asia/Shanghai by default. Pure: no I/O
beyond the calendar data shipped inside the ``chinese_calendar`` package.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar
from prometheus_client import Counter

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEFAULT_CLOSE_OF_BUSINESS = time(17, 30)
DEFAULT_WORKING_HOURS: tuple[tuple[time, time], ...] = ((time(9, 0), time(12, 0)), (time(13, 30), time(17, 30)))

#: How far a search for the next working day or working hour may run before
#: giving up: an override table that switches off ten years is a configuration error.
_MAX_SEARCH_DAYS = 3660

log = logging.getLogger("coffeetime.calendar")

CALENDAR_FALLBACK = Counter(
    "coffeetime_calendar_fallback_total",
    "Working-day decisions made with the Monday-Friday fallback because the official calendar does not know the year.",
    ["year"],
)

_warned_years: set[int] = set()
_warned_lock = threading.Lock()


@cache
def is_official(year: int) -> bool:
    """Whether the packaged official calendar knows ``year`` (holidays and make-up days)."""
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=1)
def known_years() -> tuple[int, ...]:
    """The years the packaged official calendar knows, ascending (e.g. 2004–2026 in chinese-calendar 1.11)."""
    listed = {d.year for d in chinese_calendar.holidays} | {d.year for d in chinese_calendar.workdays}
    if not listed:
        return ()
    return tuple(y for y in range(min(listed), max(listed) + 1) if is_official(y))


def _note_fallback(year: int) -> None:
    CALENDAR_FALLBACK.labels(year=str(year)).inc()
    with _warned_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    known = known_years()
    span = f"{known[0]}-{known[-1]}" if known else "none"
    log.warning(
        "official working-day calendar has no data for year %d (known years: %s); "
        "falling back to Monday-Friday for %d: update chinese-calendar or add overrides",
        year,
        span,
        year,
    )


YearSource = Literal["loaded", "package", "unknown"]
"""Where a year's holidays come from: a schedule the district loaded, the ``chinese_calendar``
package, or nowhere (the Monday–Friday fallback)."""


@dataclass(frozen=True)
class OfficialYear:
    """One year of the State Council's schedule (国务院办公厅关于部分节假日安排的通知), as loaded.

    ``holidays``: every day off, with its holiday's name (元旦, 春节...);
    ``workdays``: the weekend days made working days (调休上班), with the
    holiday they make up for (may be empty). Every other day is a working day
    from Monday to Friday. Validated where the file is read
    (``services.escalation.domain.calendar_year``); here only its shape.
    """

    year: int
    holidays: Mapping[date, str]
    workdays: Mapping[date, str] = field(default_factory=dict)
    source: str = ""
    digest: str = ""

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` (in this year) is a working day under this schedule."""
        if day in self.holidays:
            return False
        if day in self.workdays:
            return True
        return day.weekday() < 5


class WorkCalendar:
    """The district's working-day calendar: the official Chinese calendar plus local overrides.

    ``overrides`` maps a date (or its ISO string) to ``True`` (a working day) or
    ``False`` (a day off) and wins over the official calendar and the fallback.
    ``working_hours`` are the daily working periods, in order; ``close_of_business``
    is the time of day a working-day deadline falls due. ``loaded_years`` are the
    State Council schedules the district loaded (:class:`OfficialYear`); they win
    over the package for their years. Build one per process and share it: its only
    state is the loaded years, replaced whole by :meth:`set_loaded_years` when the
    district loads a year (the per-day memo is dropped with them).
    """

    def __init__(
        self,
        overrides: Mapping[date | str, bool] | None = None,
        close_of_business: time = DEFAULT_CLOSE_OF_BUSINESS,
        working_hours: Iterable[tuple[time, time]] = DEFAULT_WORKING_HOURS,
        tz: ZoneInfo = SHANGHAI,
        loaded_years: Iterable[OfficialYear] = (),
    ) -> None:
        self.overrides: dict[date, bool] = {}
        for key, working in (overrides or {}).items():
            day = date.fromisoformat(key) if isinstance(key, str) else key
            if isinstance(day, datetime) or not isinstance(day, date):
                raise ValueError(f"override key {key!r} must be a date")
            self.overrides[day] = bool(working)
        periods = tuple((start, end) for start, end in working_hours)
        if not periods:
            raise ValueError("working_hours needs at least one period")
        for i, (start, end) in enumerate(periods):
            if not start < end:
                raise ValueError(f"working_hours[{i}]: start {start} must be before end {end}")
            if i and not periods[i - 1][1] <= start:
                raise ValueError(f"working_hours[{i}]: periods must be in order and must not overlap")
        self.working_hours = periods
        self.close_of_business = close_of_business
        self.tz = tz
        self._loaded: dict[int, OfficialYear] = {}
        self._working: dict[date, bool] = {}  # a memo of the answers under the loaded years
        self.set_loaded_years(loaded_years)

    def set_loaded_years(self, years: Iterable[OfficialYear]) -> bool:
        """Replace the loaded State Council schedules; returns whether anything changed.

        One assignment each for the table and the memo, so a reader in the same
        event loop sees either the old calendar or the new one, never a mix.
        """
        table = {y.year: y for y in years}
        if {y: (o.digest, o.holidays, o.workdays) for y, o in table.items()} == {
                y: (o.digest, o.holidays, o.workdays) for y, o in self._loaded.items()}:
            return False
        self._loaded, self._working = table, {}
        return True

    @property
    def loaded_years(self) -> dict[int, OfficialYear]:
        """The loaded schedules by year (a copy)."""
        return dict(self._loaded)

    def with_year(self, year: OfficialYear) -> WorkCalendar:
        """A calendar like this one with ``year`` loaded too (replacing one of the same year): for a dry run."""
        other = WorkCalendar(self.overrides, self.close_of_business, self.working_hours, self.tz)
        other.set_loaded_years([*(y for y in self._loaded.values() if y.year != year.year), year])
        return other

    def source_of(self, year: int) -> YearSource:
        """Where ``year``'s holidays come from: ``loaded``, ``package`` or ``unknown`` (the fallback)."""
        if year in self._loaded:
            return "loaded"
        return "package" if is_official(year) else "unknown"

    def knows(self, year: int) -> bool:
        """Whether a loaded schedule or the package knows ``year`` (else Monday–Friday is only a guess)."""
        return self.source_of(year) != "unknown"

    def __repr__(self) -> str:
        hours = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in self.working_hours)
        return (f"WorkCalendar(tz={self.tz.key}, hours=[{hours}], close={self.close_of_business:%H:%M}, "
                f"overrides={len(self.overrides)}, loaded={sorted(self._loaded)})")

    # --- days -----------------------------------------------------------------

    @staticmethod
    def is_official(year: int) -> bool:
        """Whether the packaged official calendar knows ``year`` (see :meth:`knows` for loaded years too)."""
        return is_official(year)

    @staticmethod
    def known_years() -> tuple[int, ...]:
        """The years the official calendar knows."""
        return known_years()

    def is_working_day(self, d: date | datetime) -> bool:
        """Whether ``d`` (a date, or an aware datetime taken in the calendar's zone) is a working day.

        Order of authority: the override table, then a loaded State Council
        schedule, then the packaged official calendar (holidays off, make-up
        days 调休 on), then — for a year neither knows — Monday to Friday,
        logged and counted.
        """
        day = self._day(d)
        memo = self._working
        known = memo.get(day)
        if known is None:
            # cached per day: chinese_calendar re-validates its whole table on every call (~24 µs)
            known = memo[day] = self._decide(day)
        return known

    def _decide(self, day: date) -> bool:
        override = self.overrides.get(day)
        if override is not None:
            return override
        loaded = self._loaded.get(day.year)
        if loaded is not None:
            return loaded.is_working_day(day)
        if is_official(day.year):
            return chinese_calendar.is_workday(day)
        _note_fallback(day.year)
        return day.weekday() < 5

    def next_working_day(self, d: date | datetime) -> date:
        """The first working day strictly after ``d``."""
        day = self._day(d)
        for _ in range(_MAX_SEARCH_DAYS):
            day += timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days after {d}: check the override table")

    def previous_working_day(self, d: date | datetime) -> date:
        """The last working day strictly before ``d``."""
        day = self._day(d)
        for _ in range(_MAX_SEARCH_DAYS):
            day -= timedelta(days=1)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days before {d}: check the override table")

    def close_of_business_on(self, d: date | datetime) -> datetime:
        """Close of business on the day ``d``, in the calendar's zone."""
        return datetime.combine(self._day(d), self.close_of_business, tzinfo=self.tz)

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The deadline ``days`` working days after ``start``: close of business of the last one.

        The day of ``start`` is not counted, whatever the hour (the civil rule:
        a period counted in days starts on the next day). Received 2026-09-30
        with 5 working days → 2026-10-13 17:30 +08:00: the National Day holiday
        (1–7 October) is skipped and Saturday 10 October, a make-up working
        day, counts. ``days == 0`` means close of business on the day of
        ``start`` if that is a working day, else on the next working day.
        """
        if days < 0:
            raise ValueError("days must not be negative")
        day = self._day(self._aware(start, "start"))
        if days == 0:
            return self.close_of_business_on(day if self.is_working_day(day) else self.next_working_day(day))
        for _ in range(days):
            day = self.next_working_day(day)
        return self.close_of_business_on(day)

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """The working days after ``a``'s date up to and including ``b``'s date (negative when ``b`` is before ``a``).

        The counterpart of :meth:`add_working_days`: for ``due = add_working_days(a, n)``
        with ``n >= 1``, ``working_days_between(a, due) == n``. "Still overdue
        after N working days" is ``working_days_between(due_at, now) >= N``.
        """
        first, last = self._day(a), self._day(b)
        if last < first:
            return -self.working_days_between(b, a)
        count = 0
        day = first + timedelta(days=1)
        while day <= last:
            if self.is_working_day(day):
                count += 1
            day += timedelta(days=1)
        return count

    def first_counted_moment(self, start: datetime) -> datetime:
        """Where a working-day clock started at ``start`` begins to count: the opening of the next working day.

        The day received is not counted, so the time a unit has for a
        working-day deadline runs from here to the deadline.
        """
        day = self.next_working_day(self._aware(start, "start"))
        return datetime.combine(day, self.working_hours[0][0], tzinfo=self.tz)

    # --- hours ----------------------------------------------------------------

    @property
    def working_day_seconds(self) -> float:
        """The length of one working day in working seconds (7 h = 25 200 s by default)."""
        return sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start)).total_seconds()
            for start, end in self.working_hours
        )

    def is_working_time(self, moment: datetime) -> bool:
        """Whether ``moment`` lies inside working hours (start included, end excluded) on a working day."""
        local = self._aware(moment, "moment").astimezone(self.tz)
        if not self.is_working_day(local.date()):
            return False
        return any(start <= local.time() < end for start, end in self.working_hours)

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The moment ``hours`` working hours after ``start``; negative ``hours`` count backwards.

        Only time inside working hours on working days counts: the clock
        stops over lunch, at night, at weekends and on holidays. A clock that
        runs out exactly at the end of a working period falls due then (e.g.
        12:00, not 13:30); counting backwards, exactly at its start (09:00 of
        a day is one full working day before 17:30 of that day).
        """
        local = self._aware(start, "start").astimezone(self.tz)
        remaining = timedelta(hours=abs(hours))
        if not remaining:
            return local
        if hours > 0:
            return self._walk_forward(local, remaining)
        return self._walk_backward(local, remaining)

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Seconds of working time between ``a`` and ``b`` (negative when ``b`` is before ``a``)."""
        a_local = self._aware(a, "a").astimezone(self.tz)
        b_local = self._aware(b, "b").astimezone(self.tz)
        if b_local < a_local:
            return -self.working_seconds_between(b_local, a_local)
        total = timedelta()
        day = a_local.date()
        while day <= b_local.date():
            if self.is_working_day(day):
                for period_start, period_end in self._periods(day):
                    lo, hi = max(period_start, a_local), min(period_end, b_local)
                    if hi > lo:
                        total += hi - lo
            day += timedelta(days=1)
        return total.total_seconds()

    # --- internals ------------------------------------------------------------

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.combine(day, start, tzinfo=self.tz), datetime.combine(day, end, tzinfo=self.tz))
            for start, end in self.working_hours
        ]

    def _walk_forward(self, moment: datetime, remaining: timedelta) -> datetime:
        day = moment.date()
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_working_day(day):
                for period_start, period_end in self._periods(day):
                    if period_end <= moment:
                        continue
                    begin = max(period_start, moment)
                    available = period_end - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError(f"no working time within {_MAX_SEARCH_DAYS} days after {moment}: check the override table")

    def _walk_backward(self, moment: datetime, remaining: timedelta) -> datetime:
        day = moment.date()
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_working_day(day):
                for period_start, period_end in reversed(self._periods(day)):
                    if period_start >= moment:
                        continue
                    end = min(period_end, moment)
                    available = end - period_start
                    if remaining <= available:
                        return end - remaining
                    remaining -= available
            day -= timedelta(days=1)
        raise ValueError(f"no working time within {_MAX_SEARCH_DAYS} days before {moment}: check the override table")

    def _day(self, d: date | datetime) -> date:
        if isinstance(d, datetime):
            return self._aware(d, "d").astimezone(self.tz).date()
        return d

    @staticmethod
    def _aware(value: datetime, name: str) -> datetime:
        if not isinstance(value, datetime):
            raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got the naive {value.isoformat()}")
        return value
