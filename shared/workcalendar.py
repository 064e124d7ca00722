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
from bisect import bisect_left
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


def _note_fallback(year: int, days: int = 1) -> None:
    CALENDAR_FALLBACK.labels(year=str(year)).inc(days)
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


_US = 1_000_000  # microseconds in a second
_DAY_US = 86_400 * _US


def _time_us(t: time) -> int:
    """Microseconds from midnight to the wall-clock time ``t``."""
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _US + t.microsecond


def _tod_us(moment: datetime) -> int:
    """Microseconds from midnight to ``moment``'s wall-clock time."""
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * _US + moment.microsecond


@dataclass(frozen=True, slots=True)
class _YearTable:
    """One year of working-day answers, decided once: ``flags[i]`` is 1 when the ``i``-th day is working,
    ``cum[i]`` the working days among its first ``i`` days (``cum[-1]`` the year's total).

    ``guessed`` (only for a year neither a loaded schedule nor the package knows) marks the days
    answered by the Monday–Friday fallback that nobody has consulted yet: the fallback is logged
    and counted when such a day is first consulted, once per day, as if decided one day at a time.
    """

    year: int
    first: int  # the proleptic ordinal of 1 January
    flags: bytes
    cum: tuple[int, ...]
    guessed: bytearray | None

    def consult(self, lo: int, hi: int) -> None:
        """Days ``lo .. hi - 1`` (indices) are being used: count the fallback for those it guessed."""
        guessed = self.guessed
        if guessed is not None:
            n = guessed.count(1, lo, hi)
            if n:
                guessed[lo:hi] = bytes(hi - lo)
                _note_fallback(self.year, n)


class WorkCalendar:
    """The district's working-day calendar: the official Chinese calendar plus local overrides.

    ``overrides`` maps a date (or its ISO string) to ``True`` (a working day) or
    ``False`` (a day off) and wins over the official calendar and the fallback.
    ``working_hours`` are the daily working periods, in order; ``close_of_business``
    is the time of day a working-day deadline falls due. ``loaded_years`` are the
    State Council schedules the district loaded (:class:`OfficialYear`); they win
    over the package for their years. Build one per process and share it: its only
    state is the loaded years, replaced whole by :meth:`set_loaded_years` when the
    district loads a year (the per-year tables are dropped with them).

    Speed: every day of a year is decided once, the first time the year is
    touched (override, loaded year, package, fallback, in that order: :meth:`_decide`),
    into a table of flags and cumulative counts; the arithmetic then counts
    working days by subtraction, finds the next one with ``bytes.find`` and
    jumps over whole working days instead of walking them (the ladder planned
    each order in about 0.5 ms walking day by day, half of escalation's handler time).
    Wall-clock arithmetic throughout, in integer microseconds, exactly as
    subtracting two datetimes of the same zone does.
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
        self._spans: tuple[tuple[int, int], ...] = tuple((_time_us(s), _time_us(e)) for s, e in periods)
        self._day_us = sum(e - s for s, e in self._spans)
        self._working_day_seconds = sum(
            (datetime.combine(date.min, end) - datetime.combine(date.min, start)).total_seconds()
            for start, end in periods
        )
        self._loaded: dict[int, OfficialYear] = {}
        self._tables: dict[int, _YearTable] = {}  # the answers under the loaded years, a year at a time
        self._recent: _YearTable | None = None  # the table last looked up (most lookups stay in one year)
        self.set_loaded_years(loaded_years)

    def set_loaded_years(self, years: Iterable[OfficialYear]) -> bool:
        """Replace the loaded State Council schedules; returns whether anything changed.

        One assignment for the table and the per-year answers, so a reader in the
        same event loop sees either the old calendar or the new one, never a mix.
        """
        table = {y.year: y for y in years}
        if {y: (o.digest, o.holidays, o.workdays) for y, o in table.items()} == {
                y: (o.digest, o.holidays, o.workdays) for y, o in self._loaded.items()}:
            return False
        self._loaded, self._tables, self._recent = table, {}, None
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
        t = self._table(day.year)
        i = day.toordinal() - t.first
        if t.guessed is not None:
            t.consult(i, i + 1)
        return t.flags[i] == 1

    def _decide(self, day: date) -> tuple[bool, bool]:
        """Whether ``day`` is a working day, and whether that was the Monday–Friday fallback's guess."""
        override = self.overrides.get(day)
        if override is not None:
            return override, False
        loaded = self._loaded.get(day.year)
        if loaded is not None:
            return loaded.is_working_day(day), False
        if is_official(day.year):
            return chinese_calendar.is_workday(day), False
        return day.weekday() < 5, True

    def _table(self, year: int) -> _YearTable:
        tables = self._tables
        found = tables.get(year)
        if found is None:
            # every day of the year decided once (chinese_calendar re-validates its whole table on every call, ~24 µs)
            first = date(year, 1, 1).toordinal()
            answers = [self._decide(date.fromordinal(o)) for o in range(first, date(year, 12, 31).toordinal() + 1)]
            flags = bytes(working for working, _ in answers)
            guessed = bytearray(guess for _, guess in answers)
            cum = [0]
            for f in flags:
                cum.append(cum[-1] + f)
            found = tables[year] = _YearTable(year, first, flags, tuple(cum), guessed if any(guessed) else None)
        return found

    def _through(self, ordinal: int) -> tuple[_YearTable, int]:
        """The year table holding ``ordinal`` and the day's index in it."""
        t = self._recent
        if t is None or not 0 <= ordinal - t.first < len(t.flags):
            t = self._recent = self._table(date.fromordinal(ordinal).year)
        return t, ordinal - t.first

    def _next_ordinal(self, ordinal: int, last: int) -> int | None:
        """The first working day in ``ordinal + 1 .. last`` (ordinals), or None."""
        last = min(last, _MAX_ORDINAL)
        o = ordinal + 1
        while o <= last:
            t, i = self._through(o)
            end = min(len(t.flags), last - t.first + 1)
            found = t.flags.find(1, i, end)
            if t.guessed is not None:
                t.consult(i, found + 1 if found >= 0 else end)
            if found >= 0:
                return t.first + found
            o = t.first + len(t.flags)
        return None

    def _nth_ordinal(self, ordinal: int, n: int, last: int) -> int | None:
        """The ``n``-th working day (``n >= 1``) after ``ordinal``, by the cumulative counts; None beyond ``last``."""
        t, i = self._through(ordinal)
        want = t.cum[i + 1] + n  # the working days from 1 January through the answer
        while True:
            if t.cum[-1] >= want:
                j = bisect_left(t.cum, want) - 1
                if t.first + j > last:
                    return None
                if t.guessed is not None:
                    t.consult(i + 1, j + 1)
                return t.first + j
            if t.guessed is not None:
                t.consult(i + 1, len(t.flags))
            want -= t.cum[-1]
            if t.year >= date.max.year or t.first + len(t.flags) > last:
                return None
            t, i = self._table(t.year + 1), -1

    def _previous_ordinal(self, ordinal: int, first: int) -> int | None:
        """The last working day in ``first .. ordinal - 1`` (ordinals), or None."""
        first = max(first, 1)
        o = ordinal - 1
        while o >= first:
            t, i = self._through(o)
            lo = max(0, first - t.first)
            found = t.flags.rfind(1, lo, i + 1)
            if t.guessed is not None:
                t.consult(found if found >= 0 else lo, i + 1)
            if found >= 0:
                return t.first + found
            o = t.first - 1
        return None

    def _count(self, first: int, last: int) -> int:
        """Working days in ``first + 1 .. last`` (ordinals, ``first <= last``)."""
        ta, ia = self._through(first)
        tb, ib = self._through(last)
        if ta is tb:
            if ta.guessed is not None:
                ta.consult(ia + 1, ib + 1)
            return ta.cum[ib + 1] - ta.cum[ia + 1]
        total = ta.cum[-1] - ta.cum[ia + 1] + tb.cum[ib + 1]
        for year in range(ta.year + 1, tb.year):
            middle = self._table(year)
            if middle.guessed is not None:
                middle.consult(0, len(middle.flags))
            total += middle.cum[-1]
        for t, lo, hi in ((ta, ia + 1, len(ta.flags)), (tb, 0, ib + 1)):
            if t.guessed is not None:
                t.consult(lo, hi)
        return total

    def next_working_day(self, d: date | datetime) -> date:
        """The first working day strictly after ``d``."""
        ordinal = self._day(d).toordinal()
        found = self._next_ordinal(ordinal, ordinal + _MAX_SEARCH_DAYS)
        if found is None:
            raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days after {d}: check the override table")
        return date.fromordinal(found)

    def previous_working_day(self, d: date | datetime) -> date:
        """The last working day strictly before ``d``."""
        ordinal = self._day(d).toordinal()
        found = self._previous_ordinal(ordinal, ordinal - _MAX_SEARCH_DAYS)
        if found is None:
            raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days before {d}: check the override table")
        return date.fromordinal(found)

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
        ordinal: int | None = self._nth_ordinal(day.toordinal(), days, day.toordinal() + _MAX_SEARCH_DAYS)
        if ordinal is not None:  # within the search limit of one step, so no step could have run out
            return datetime.combine(date.fromordinal(ordinal), self.close_of_business, tzinfo=self.tz)
        ordinal = day.toordinal()
        for _ in range(days):
            after = ordinal
            ordinal = self._next_ordinal(after, after + _MAX_SEARCH_DAYS)
            if ordinal is None:
                raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days after "
                                 f"{date.fromordinal(after)}: check the override table")
        return datetime.combine(date.fromordinal(ordinal), self.close_of_business, tzinfo=self.tz)

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """The working days after ``a``'s date up to and including ``b``'s date (negative when ``b`` is before ``a``).

        The counterpart of :meth:`add_working_days`: for ``due = add_working_days(a, n)``
        with ``n >= 1``, ``working_days_between(a, due) == n``. "Still overdue
        after N working days" is ``working_days_between(due_at, now) >= N``.
        """
        first, last = self._day(a).toordinal(), self._day(b).toordinal()
        if last < first:
            return -self._count(last, first)
        return self._count(first, last)

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
        return self._working_day_seconds

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
            return self._walk_forward(local, remaining // _ONE_US)
        return self._walk_backward(local, remaining // _ONE_US)

    def working_seconds_between(self, a: datetime, b: datetime) -> float:
        """Seconds of working time between ``a`` and ``b`` (negative when ``b`` is before ``a``)."""
        a_local = self._aware(a, "a").astimezone(self.tz)
        b_local = self._aware(b, "b").astimezone(self.tz)
        if b_local < a_local:
            return -self.working_seconds_between(b_local, a_local)
        oa, ob = a_local.toordinal(), b_local.toordinal()
        ta, tb = _tod_us(a_local), _tod_us(b_local)
        if oa == ob:
            return self._within(oa, ta, tb) / _US
        total = self._within(oa, ta, _DAY_US) + self._within(ob, 0, tb)
        if ob - oa > 1:
            total += self._count(oa, ob - 1) * self._day_us
        return total / _US

    # --- internals ------------------------------------------------------------

    def _within(self, ordinal: int, lo: int, hi: int) -> int:
        """Working microseconds between the times of day ``lo`` and ``hi`` on the day ``ordinal``."""
        t, i = self._through(ordinal)
        if t.guessed is not None:
            t.consult(i, i + 1)
        if not t.flags[i]:
            return 0
        total = 0
        for start, end in self._spans:
            span = min(end, hi) - max(start, lo)
            if span > 0:
                total += span
        return total

    def _at(self, ordinal: int, us: int) -> datetime:
        return datetime.combine(date.fromordinal(ordinal), time.min, tzinfo=self.tz) + timedelta(microseconds=us)

    def _walk_forward(self, moment: datetime, remaining: int) -> datetime:
        first = moment.toordinal()
        if self.is_working_day(moment.date()):
            t = _tod_us(moment)
            for start, end in self._spans:
                if end <= t:
                    continue
                begin = max(start, t)
                available = end - begin
                if remaining <= available:
                    return moment + timedelta(microseconds=remaining) if begin == t else self._at(first, begin + remaining)
                remaining -= available
        # whole working days are skipped by counting; the clock runs out on the day after them
        skip = (remaining - 1) // self._day_us
        remaining -= skip * self._day_us
        ordinal = self._nth_ordinal(first, skip + 1, first + _MAX_SEARCH_DAYS - 1)
        if ordinal is None:
            raise ValueError(f"no working time within {_MAX_SEARCH_DAYS} days after {moment}: check the override table")
        for start, end in self._spans:
            if remaining <= end - start:
                return self._at(ordinal, start + remaining)
            remaining -= end - start
        raise AssertionError("a whole working day holds the rest")  # pragma: no cover

    def _walk_backward(self, moment: datetime, remaining: int) -> datetime:
        first = moment.toordinal()
        if self.is_working_day(moment.date()):
            t = _tod_us(moment)
            for start, end in reversed(self._spans):
                if start >= t:
                    continue
                stop = min(end, t)
                available = stop - start
                if remaining <= available:
                    return moment - timedelta(microseconds=remaining) if stop == t else self._at(first, stop - remaining)
                remaining -= available
        skip = (remaining - 1) // self._day_us
        remaining -= skip * self._day_us
        last = first - _MAX_SEARCH_DAYS + 1
        ordinal: int | None = first
        for _ in range(skip + 1):
            ordinal = self._previous_ordinal(ordinal, last)
            if ordinal is None:
                raise ValueError(
                    f"no working time within {_MAX_SEARCH_DAYS} days before {moment}: check the override table")
        for start, end in reversed(self._spans):
            if remaining <= end - start:
                return self._at(ordinal, end - remaining)
            remaining -= end - start
        raise AssertionError("a whole working day holds the rest")  # pragma: no cover

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


_ONE_US = timedelta(microseconds=1)
_MAX_ORDINAL = date.max.toordinal()
