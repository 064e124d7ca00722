"""Programme figures (企业咖啡时 headline figures), pure: who attended as what, and the arithmetic.

The programme reports: events held (main 主活动, sub 子活动), enterprises taking part,
district-leader and department-head attendances, the share of member units taking
part, appeals collected, closed, the closure rate 办结率 and satisfaction rate 满意率.

* :func:`attendee_role` — an event's attendee as the figures count it. A structured
  attendee ``{name, role, unit}`` says its role; a text is looked up in the district
  configuration: a district leader's name or title (``leaders``: 副区长, 区委常委 ...;
  and 区委书记, 区长, 区委副书记 ...) is a district leader; a unit head's name, or a
  unit's name or alias followed by a title (区行政审批局局长), is that unit's
  department head; anything else is ``other``.
* :func:`programme_figures` — the figures of a period from its events and their appeals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.district import District, UnitKind

Role = Literal["district_leader", "department_head", "other"]

LEADER_TITLES = ("区委书记", "区委副书记", "区长", "副区长", "常务副区长", "区委常委", "区人大常委会主任",
                 "区政协主席", "区领导")
"""Titles of district leaders (besides those of the configuration's ``leaders``)."""

MEMBER_KINDS = frozenset({UnitKind.bureau, UnitKind.town, UnitKind.park, UnitKind.utility, UnitKind.lead})
"""The member units (成员单位) whose share taking part is reported; the supervision office is not one."""

PLEASED = frozenset({"satisfied", "basically_satisfied"})


@dataclass(frozen=True)
class CountedAttendee:
    """An attendee with the role the figures count and, for a department head, the unit."""

    name: str
    role: Role
    unit_code: str | None = None


@dataclass(frozen=True)
class EventFacts:
    """One coffee event as the figures need it."""

    event_id: str
    kind: Literal["main", "sub"]
    date: date
    organizer_unit: str
    items: int
    enterprises: tuple[str, ...] = ()
    attendees: tuple[str | dict, ...] = ()


@dataclass(frozen=True)
class AppealFacts:
    """One appeal raised at an event: closed (by the period's end) and its latest own rating."""

    appeal_id: str
    event_kind: Literal["main", "sub"]
    closed: bool
    rating: str | None = None


def attendee_role(attendee: str | dict, district: District) -> CountedAttendee:
    """How ``attendee`` (a text, or ``{name, role, unit}``) counts in the figures (see the module docstring)."""
    if isinstance(attendee, dict):
        name = str(attendee.get("name") or "")
        role, unit = attendee.get("role"), attendee.get("unit")
        found = district.find_unit(unit) if unit else None
        if role:
            return CountedAttendee(name, role, found.unit_code if found else None)
        if found is not None:
            return CountedAttendee(name, "department_head", found.unit_code)
    else:
        name = attendee
    text = name.strip()
    for leader in district.leaders:
        if text == leader.name or text == leader.title or text.endswith(leader.title):
            return CountedAttendee(name, "district_leader")
    for unit in district.units:
        if unit.head is not None and text == unit.head.name:
            return CountedAttendee(name, "department_head", unit.unit_code)
    best: tuple[int, str] | None = None
    for unit in district.units:
        for label in (unit.name, *unit.aliases):
            if len(text) > len(label) and text.startswith(label) and (best is None or len(label) > best[0]):
                best = (len(label), unit.unit_code)
    if best is not None:
        return CountedAttendee(name, "department_head", best[1])
    if any(text == t or text.endswith(t) for t in LEADER_TITLES):
        return CountedAttendee(name, "district_leader")
    return CountedAttendee(name, "other")


def enterprise_key(name: str | None, uscc: str | None) -> str | None:
    """One enterprise, whichever way an item names it: its credit code, else its name without spaces."""
    if uscc:
        return f"uscc:{uscc.upper()}"
    if name and name.strip():
        return "name:" + "".join(name.split())
    return None


class AppealFigures(BaseModel):
    """Appeals raised at the period's events of one kind (or all)."""

    model_config = ConfigDict(frozen=True)

    collected: int = Field(description="Items recorded at the events (each an appeal).")
    closed: int = Field(description="Of those, closed (办结) by the period's end (a merged duplicate with its master).")
    closure_rate: float | None = Field(description="办结率: closed / collected.")
    rated: int = Field(description="Appeals the enterprise rated (its latest rating by the period's end).")
    satisfied: int = Field(description="Of those, satisfied or basically satisfied.")
    satisfaction_rate: float | None = Field(description="满意率: satisfied / rated.")


class ProgrammeFigures(BaseModel):
    """The programme's headline figures over a period (dates in Asia/Shanghai, both ends included)."""

    period_from: date
    period_to: date
    district: str = ""
    events_main: int = Field(description="Main events held (主活动).")
    events_sub: int = Field(description="Sub-events held (子活动).")
    enterprises: int = Field(description="Distinct enterprises that raised an appeal at an event (by credit code, "
                                         "else name).")
    district_leader_attendances: int = Field(description="District leaders' attendances (one per leader and event).")
    department_head_attendances: int = Field(description="Department heads' attendances.")
    member_units: int = Field(description="Member units of the district configuration (bureaus, towns, parks, "
                                          "utilities, the lead unit).")
    units_taking_part: int = Field(description="Member units that organised an event or whose head attended one.")
    unit_participation_rate: float | None = Field(description="units_taking_part / member_units.")
    main: AppealFigures = Field(description="Appeals collected at main events: the programme's headline.")
    sub: AppealFigures
    all: AppealFigures
    units: list[str] = Field(default_factory=list, description="The unit codes taking part.")
    definitions: str = Field("", description="How each figure is counted.")


DEFINITIONS = (
    "events: by their date in the period; enterprises: distinct by credit code, else name; attendances: one per "
    "attendee and event, a text attendee's role looked up in the district configuration (leaders' names and titles, "
    "unit heads' names, a unit's name followed by a title); member units: every unit but the supervision office; "
    "taking part: organised an event or had its head attend; collected: the events' items; closed: closed by the "
    "period's end (a merged duplicate when its master is); closure rate = closed / collected; satisfaction rate = "
    "(satisfied + basically satisfied) / rated, from each appeal's latest own rating by the period's end"
)


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


def appeal_figures(collected: int, appeals: Iterable[AppealFacts]) -> AppealFigures:
    """Closed and rated of these appeals, against ``collected`` items."""
    appeals = list(appeals)
    closed = sum(1 for a in appeals if a.closed)
    rated = [a for a in appeals if a.rating is not None]
    satisfied = sum(1 for a in rated if a.rating in PLEASED)
    return AppealFigures(collected=collected, closed=closed, closure_rate=_rate(closed, collected), rated=len(rated),
                         satisfied=satisfied, satisfaction_rate=_rate(satisfied, len(rated)))


@dataclass
class _Tally:
    leaders: int = 0
    heads: int = 0
    units: set[str] = field(default_factory=set)


def programme_figures(period_from: date, period_to: date, events: Sequence[EventFacts],
                      appeals: Sequence[AppealFacts], district: District) -> ProgrammeFigures:
    """The figures of the events dated in [period_from, period_to] and the appeals raised at them."""
    held = [e for e in events if period_from <= e.date <= period_to]
    members = {u.unit_code for u in district.units if u.kind in MEMBER_KINDS}
    tally = _Tally()
    for e in held:
        organizer = district.find_unit(e.organizer_unit)
        if organizer is not None:
            tally.units.add(organizer.unit_code)
        for attendee in e.attendees:
            counted = attendee_role(attendee, district)
            if counted.role == "district_leader":
                tally.leaders += 1
            elif counted.role == "department_head":
                tally.heads += 1
                if counted.unit_code:
                    tally.units.add(counted.unit_code)
    taking_part = sorted(tally.units & members)
    by_kind = {k: sum(e.items for e in held if e.kind == k) for k in ("main", "sub")}
    return ProgrammeFigures(
        period_from=period_from, period_to=period_to, district=district.name,
        events_main=sum(1 for e in held if e.kind == "main"), events_sub=sum(1 for e in held if e.kind == "sub"),
        enterprises=len({k for e in held for k in e.enterprises}),
        district_leader_attendances=tally.leaders, department_head_attendances=tally.heads,
        member_units=len(members), units_taking_part=len(taking_part),
        unit_participation_rate=_rate(len(taking_part), len(members)),
        main=appeal_figures(by_kind["main"], (a for a in appeals if a.event_kind == "main")),
        sub=appeal_figures(by_kind["sub"], (a for a in appeals if a.event_kind == "sub")),
        all=appeal_figures(by_kind["main"] + by_kind["sub"], appeals),
        units=taking_part, definitions=DEFINITIONS,
    )


def render_table(f: ProgrammeFigures) -> str:
    """The figures as the programme states them, one per line."""
    def pct(v: float | None) -> str:
        return f"{v * 100:.2f}%" if v is not None else "-"

    lines = [
        f"programme figures {f.period_from} .. {f.period_to}, {f.district}",
        f"  events held                      {f.events_main} main, {f.events_sub} sub",
        f"  enterprises taking part          {f.enterprises}",
        f"  district leaders attended        {f.district_leader_attendances} times",
        f"  department heads attended        {f.department_head_attendances} times",
        f"  member units taking part         {f.units_taking_part} of {f.member_units} ({pct(f.unit_participation_rate)})",
    ]
    for label, a in (("main events", f.main), ("sub-events", f.sub), ("all events", f.all)):
        lines.append(f"  appeals at {label:<12}         {a.collected} collected, {a.closed} closed: closure rate "
                     f"(办结率) {pct(a.closure_rate)}; {a.rated} rated, satisfaction rate (满意率) "
                     f"{pct(a.satisfaction_rate)}")
    lines.append(f"  ({f.definitions})")
    return "\n".join(lines) + "\n"
