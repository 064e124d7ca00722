"""A year's official holiday schedule as the district loads it (国务院办公厅关于部分节假日安排的通知), checked.

The State Council publishes next year's holidays and make-up working days (调休)
around November; ``chinese-calendar`` carries them only from its next release.
The district loads the year from a file (YAML or JSON, the same shape)::

    year: 2027
    source: 国务院办公厅关于2027年部分节假日安排的通知 (国办发明电〔2026〕…号), https://www.gov.cn/...
    holidays:
      - name: 元旦
        dates: [2027-01-01]
      - name: 春节
        from: 2027-02-05
        to: 2027-02-11
    workdays:            # weekend days made working days (调休上班); may be empty
      - date: 2027-02-13
        for: 春节

:func:`parse_year` checks it whole and returns an :class:`OfficialYear`, or
raises :class:`ScheduleInvalid` naming every bad entry (a field path and what is
wrong with it), so nothing of a bad file is ever stored. The rules, each named:

* ``year_range`` — every date lies in the file's ``year``;
* ``holidays_not_empty`` — at least one holiday (a file without is a mistake);
* ``holiday_once`` — a day is listed under one holiday only;
* ``not_both`` — no day is both a holiday and a make-up working day;
* ``workday_on_weekend`` — a make-up working day is a Saturday or a Sunday;
* ``from_before_to`` / ``dates_or_range`` — a holiday gives ``dates`` or ``from``/``to``.

And when it is loaded (:func:`loadable_problems`):

* ``year_window`` — this year or next (Asia/Shanghai): a schedule is loaded for the
  deadlines still to come, and a past year has none;
* ``over_package`` — a year ``chinese-calendar`` already knows is replaced only when
  asked to (``--over-package``): the file wins over the package for that year, so a
  correction of the State Council (as in 2020) must be meant.

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from datetime import date, timedelta
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.workcalendar import OfficialYear

MAX_DAYS_OFF = 60
"""More listed holidays than this in one year is a file of something else (the official total is about 30)."""

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ScheduleProblem(BaseModel):
    """One bad entry: where (``holidays[1].dates[0]``), what, and the rule it breaks."""

    field: str
    message: str
    rule: str


class ScheduleInvalid(ValueError):
    """The file is not a valid year schedule; ``problems`` names each bad entry."""

    def __init__(self, problems: list[ScheduleProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class HolidayEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=40, description="The holiday's name, as in the notice (元旦, 春节...).")
    dates: list[date] | None = Field(None, max_length=MAX_DAYS_OFF, description="The days off, or use from/to.")
    from_: date | None = Field(None, alias="from", description="First day off (with to).")
    to: date | None = Field(None, description="Last day off, included (with from).")


class WorkdayEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    date: dt.date = Field(description="A Saturday or Sunday made a working day (调休上班).")
    for_: str = Field("", alias="for", max_length=40, description="The holiday it makes up for.")


class YearSchedule(BaseModel):
    """The shape of a year file (and of the HTTP body of ``POST /calendar/years``)."""

    model_config = ConfigDict(extra="forbid")
    year: int = Field(ge=2000, le=2100, description="The year the schedule is for.")
    source: str = Field("", max_length=500, description="Where it comes from: the notice's title, number and URL.")
    holidays: list[HolidayEntry] = Field(max_length=40, description="Each holiday with its days off.")
    workdays: list[WorkdayEntry] = Field(default_factory=list, max_length=40,
                                         description="Make-up working days (调休上班).")


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out.replace("from_", "from").replace("for_", "for") or "file"


def parse_year(text: str | bytes) -> OfficialYear:
    """Read a year file (YAML or JSON) and check it whole: its :class:`OfficialYear`, or :class:`ScheduleInvalid`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScheduleInvalid([ScheduleProblem(field="file", message=f"not UTF-8 text ({exc.reason})",
                                                   rule="readable")]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScheduleInvalid([ScheduleProblem(field="file", message=f"neither YAML nor JSON: {exc}".splitlines()[0],
                                               rule="readable")]) from None
    return check_year(document)


def check_year(document: Any) -> OfficialYear:
    """Check an already parsed document (a mapping); see :func:`parse_year`."""
    if not isinstance(document, dict):
        raise ScheduleInvalid([ScheduleProblem(field="file", rule="readable",
                                               message="expected a mapping with year, holidays and workdays")])
    try:
        schedule = YearSchedule.model_validate(document)
    except ValidationError as exc:
        raise ScheduleInvalid([ScheduleProblem(field=_loc(e["loc"]), message=e["msg"], rule="shape")
                               for e in exc.errors()]) from None
    return year_of(schedule)


def year_of(schedule: YearSchedule) -> OfficialYear:
    """The rules across entries (see the module); every problem is collected before raising."""
    problems: list[ScheduleProblem] = []

    def bad(where: str, rule: str, message: str) -> None:
        problems.append(ScheduleProblem(field=where, message=message, rule=rule))

    def in_year(where: str, day: date) -> bool:
        if day.year != schedule.year:
            bad(where, "year_range", f"{day} is not in {schedule.year}")
            return False
        return True

    year = schedule.year
    holidays: dict[date, str] = {}
    listed_at: dict[date, str] = {}
    if not schedule.holidays:
        bad("holidays", "holidays_not_empty", f"no holiday listed for {year}: a schedule has at least one")
    for i, h in enumerate(schedule.holidays):
        where = f"holidays[{i}]"
        days: list[tuple[str, date]] = []
        if h.dates is not None and (h.from_ or h.to):
            bad(where, "dates_or_range", "give either dates or from/to, not both")
        elif h.dates is not None:
            if not h.dates:
                bad(f"{where}.dates", "holidays_not_empty", f"{h.name}: no day listed")
            days = [(f"{where}.dates[{j}]", d) for j, d in enumerate(h.dates) if in_year(f"{where}.dates[{j}]", d)]
        elif h.from_ and h.to:
            ok = in_year(f"{where}.from", h.from_) & in_year(f"{where}.to", h.to)
            if ok and h.to < h.from_:
                bad(f"{where}.to", "from_before_to", f"{h.to} is before from {h.from_}")
            elif ok:
                days = [(where, h.from_ + timedelta(days=k)) for k in range((h.to - h.from_).days + 1)]
        else:
            bad(where, "dates_or_range", f"{h.name}: give dates, or from and to")
        for w, d in days:
            if d in holidays and holidays[d] != h.name:
                bad(w, "holiday_once", f"{d} is listed under both {holidays[d]} ({listed_at[d]}) and {h.name}")
            elif d in holidays:
                bad(w, "holiday_once", f"{d} is listed twice under {h.name}")
            else:
                holidays[d], listed_at[d] = h.name, w
    if len(holidays) > MAX_DAYS_OFF:
        bad("holidays", "year_range", f"{len(holidays)} days off listed: more than {MAX_DAYS_OFF} is not a holiday schedule")
    workdays: dict[date, str] = {}
    for i, w in enumerate(schedule.workdays):
        where = f"workdays[{i}].date"
        d = w.date
        if not in_year(where, d):
            continue
        if d in holidays:
            bad(where, "not_both", f"{d} is also a holiday ({holidays[d]}, {listed_at[d]})")
        elif d.weekday() < 5:
            bad(where, "workday_on_weekend",
                f"{d} is a {_WEEKDAYS[d.weekday()]}: a make-up working day is a Saturday or Sunday")
        elif d in workdays:
            bad(where, "holiday_once", f"{d} is listed twice")
        else:
            workdays[d] = w.for_
    if problems:
        raise ScheduleInvalid(problems)
    return OfficialYear(year=year, holidays=dict(sorted(holidays.items())), workdays=dict(sorted(workdays.items())),
                        source=schedule.source, digest=digest_of(year, holidays, workdays, schedule.source))


def digest_of(year: int, holidays: dict[date, str], workdays: dict[date, str], source: str) -> str:
    """A digest of what the schedule says (not of the file's spelling): the same schedule loads once."""
    body = json.dumps(document_of_parts(year, holidays, workdays, source), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def document_of_parts(year: int, holidays: dict[date, str], workdays: dict[date, str], source: str) -> dict:
    """The normalised document: each holiday with its dates, each make-up day; what is stored and shown."""
    grouped: dict[str, list[str]] = {}
    for d, name in sorted(holidays.items()):
        grouped.setdefault(name, []).append(d.isoformat())
    return {"year": year, "source": source,
            "holidays": [{"name": n, "dates": ds} for n, ds in grouped.items()],
            "workdays": [{"date": d.isoformat(), "for": f} for d, f in sorted(workdays.items())]}


def document_of(year: OfficialYear) -> dict:
    """:class:`OfficialYear` as its normalised document (a valid year file again)."""
    return document_of_parts(year.year, dict(year.holidays), dict(year.workdays), year.source)


def loadable_problems(year: OfficialYear, this_year: int, package_knows: bool, over_package: bool) -> list[ScheduleProblem]:
    """Why ``year`` may not be loaded now (empty: it may); see the module's ``year_window`` and ``over_package``."""
    problems = []
    if not this_year <= year.year <= this_year + 1:
        problems.append(ScheduleProblem(field="year", rule="year_window",
                                        message=f"{year.year}: only {this_year} or {this_year + 1} can be loaded"))
    if package_knows and not over_package:
        problems.append(ScheduleProblem(field="year", rule="over_package", message=(
            f"chinese-calendar already knows {year.year}: loading it replaces the package's holidays for that year; "
            "ask for it (over_package) if that is meant")))
    return problems
