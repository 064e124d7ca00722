"""The ladder: the steps a clock climbs, and when each fires (:func:`plan_firings`).

Two clocks run on every work order (see :mod:`shared.workcalendar`):

* ``sign_for`` — working hours from dispatch until the unit signs for the order
  (签收). Its ladder is only ``overdue``: sign-for limits are a few working
  hours, and the liaisons were already told at dispatch, so a warning would be
  noise. A late signature is reported to the lead unit (and the unit's
  liaisons, who must sign).
* ``handling`` — working days from receipt until the unit replies (办理时限).
  Its ladder, with the default policy::

      warning_75        75 % of the working time allowed has passed
      warning_1d        one working day is left (the opening of the last day)
      overdue           the deadline passed: unit head and lead unit (督办)
      district_leader   still overdue 2 working days after the deadline
      supervision       still overdue 3 more working days after that (通报)

A backlog appeal whose ladder lies wholly in the past escalates as soon as it is
dispatched: every level whose time has passed fires, in ladder order, each
exactly once (:func:`firings_due`). Levels are not collapsed to the highest one:
every step has its own recipients and its own record in the timeline.

Beside the ladder, ``difficult`` (疑难或重大): the unit flags the appeal
difficult or major and the district leader hears at once; an order has at most
one such step (:data:`DIFFICULT_KEY`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Literal, get_args

from services.escalation.domain.policy import EscalationPolicy
from shared.contracts.common import SHANGHAI
from shared.workcalendar import WorkCalendar

Clock = Literal["sign_for", "handling"]
Level = Literal["warning_75", "warning_1d", "overdue", "district_leader", "supervision"]
TargetLevel = Literal["warning_75", "warning_1d", "overdue", "district_leader", "supervision", "difficult"]

CLOCKS: tuple[Clock, ...] = get_args(Clock)
#: The ladder, lowest step first; also the order in which simultaneous firings fire.
LADDER: tuple[Level, ...] = get_args(Level)
WARNING_LEVELS: frozenset[str] = frozenset({"warning_75", "warning_1d"})
ESCALATION_LEVELS: frozenset[str] = frozenset({"overdue", "district_leader", "supervision", "difficult"})

DIFFICULT_KEY = "difficult"
"""Step key of the one ``difficult`` escalation an order can have (the unit's own request)."""


@dataclass(frozen=True)
class Firing:
    """One planned step of a clock's ladder: ``level`` fires at ``fire_at`` for the deadline ``due_at``."""

    level: Level
    fire_at: datetime
    clock: Clock
    due_at: datetime

    @cached_property
    def key(self) -> str:
        """Identity of this firing for a unique key: a step fires once per clock and deadline (built once)."""
        return f"{self.clock}:{self.level}:{self.due_at.isoformat()}"

    @property
    def is_warning(self) -> bool:
        """A warning (``ct.deadline.warning``) rather than an escalation (``ct.appeal.escalated``)."""
        return self.level in WARNING_LEVELS

    def to_dict(self) -> dict[str, str]:
        """The firing as plain strings, times in ISO 8601."""
        return {"level": self.level, "fire_at": self.fire_at.isoformat(), "clock": self.clock, "due_at": self.due_at.isoformat()}


def plan_firings(
    clock: Clock,
    started_at: datetime,
    due_at: datetime,
    policy: EscalationPolicy,
    cal: WorkCalendar,
    ladders: Ladders | None = None,
) -> list[Firing]:
    """The ladder of one clock as a plan, in firing order.

    ``sign_for``: only ``overdue`` at ``due_at``.

    ``handling`` (``started_at`` is the receipt; the receipt day is not
    counted, so the allowed time runs from the opening of the next working
    day to ``due_at``):

    * ``warning_75`` when ``policy.warning_fraction`` of the allowed working time has passed;
    * ``warning_1d`` when ``policy.warning_days_before`` working days are left
      (for a deadline at 17:30 on day D and one day: 09:00 on D). Skipped when
      it would not lie after the start of the allowed time, or when it
      coincides in working time with ``warning_75`` (no working time between them);
    * ``overdue`` at ``due_at``;
    * ``district_leader`` at close of business ``leader_after_days`` working days after ``due_at``;
    * ``supervision`` at close of business ``supervision_after_days`` working days after that.

    Times are in the calendar's zone. Firings at the same moment keep ladder order.
    A re-plan (an extension moved the deadline, a reopened order got a new
    clock) is simply a new plan; its firings have new keys.

    ``ladders``: the handling ladders already planned on ``cal`` (:class:`Ladders`), reused.
    """
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}: one of {', '.join(CLOCKS)}")
    due = _in_zone(due_at, cal)
    started = _in_zone(started_at, cal)
    if clock == "sign_for":
        return [Firing("overdue", due, clock, due)]
    origin = cal.first_counted_moment(started)
    if origin >= due:
        origin = started
    if ladders is None:
        return list(_handling_ladder(origin, due, policy, cal))
    if ladders.calendar is not cal:
        raise ValueError("these ladders were planned on another calendar")
    key = (origin, due, policy)
    ladder = ladders.handling.get(key)
    if ladder is None:
        ladder = ladders.handling[key] = _handling_ladder(origin, due, policy, cal)
    return list(ladder)


class Ladders:
    """The handling ladders planned on one calendar as it stands, each planned once (see :func:`plan_firings`).

    A handling ladder depends on its clock's start only through where the clock
    begins to count (the opening of the next working day), so every order
    received on one day with the same deadline and policy has the same ladder: a
    batch of a few hundred dispatched orders plans a handful. Firings are frozen,
    so the orders share them. Keep one only while the calendar cannot change
    (a batch's planning, with no ``await`` in it: ``CalendarSync`` swaps the
    loaded years between awaits), then drop it.
    """

    def __init__(self, calendar: WorkCalendar) -> None:
        self.calendar = calendar
        self.handling: dict[tuple[datetime, datetime, EscalationPolicy], tuple[Firing, ...]] = {}


def _handling_ladder(origin: datetime, due: datetime, policy: EscalationPolicy, cal: WorkCalendar
                     ) -> tuple[Firing, ...]:
    """The handling clock's ladder counted from ``origin`` to ``due`` (both in the calendar's zone)."""
    clock: Clock = "handling"
    firings: list[Firing] = []
    allowed = cal.working_seconds_between(origin, due)
    warning_75: datetime | None = None
    if allowed > 0:
        warning_75 = cal.add_working_hours(origin, round(policy.warning_fraction * allowed) / 3600)
        if warning_75 < due:
            firings.append(Firing("warning_75", warning_75, clock, due))
        else:
            warning_75 = None
    if policy.warning_days_before and allowed > 0:
        one_day_left = cal.add_working_hours(due, -policy.warning_days_before * cal.working_day_seconds / 3600)
        after_start = cal.working_seconds_between(origin, one_day_left) > 0
        coincides = warning_75 is not None and cal.working_seconds_between(warning_75, one_day_left) == 0
        if after_start and not coincides:
            firings.append(Firing("warning_1d", one_day_left, clock, due))
    firings.append(Firing("overdue", due, clock, due))
    leader_at = cal.add_working_days(due, policy.leader_after_days) if policy.leader_after_days else due
    firings.append(Firing("district_leader", leader_at, clock, due))
    supervision_at = cal.add_working_days(leader_at, policy.supervision_after_days) if policy.supervision_after_days else leader_at
    firings.append(Firing("supervision", supervision_at, clock, due))
    return tuple(sorted(firings, key=lambda f: (f.fire_at, LADDER.index(f.level))))


def firings_due(plan: Iterable[Firing], now: datetime, already_fired: Iterable[str] = ()) -> list[Firing]:
    """The firings whose time has come (``fire_at <= now``) and that have not fired, in ladder order.

    ``already_fired`` holds :attr:`Firing.key` values. A backlog order whose
    whole ladder lies in the past gets every level at once, lowest first.
    """
    done = set(already_fired)
    return sorted(
        (f for f in plan if f.fire_at <= now and f.key not in done),
        key=lambda f: (f.fire_at, LADDER.index(f.level)),
    )


def overdue_seconds(due_at: datetime, now: datetime) -> int:
    """How late, in seconds of wall time (0 when not late)."""
    return max(0, int((now - due_at).total_seconds()))


def reason_for(firing: Firing) -> str:
    """A short English reason for the event the firing produces."""
    due = firing.due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    what = "sign-for" if firing.clock == "sign_for" else "handling"
    return {
        "warning_75": f"most of the {what} time used; due {due}",
        "warning_1d": f"one working day left; {what} deadline {due}",
        "overdue": f"{what} deadline {due} missed",
        "district_leader": f"{what} deadline {due} missed; still open, reported to the district leader",
        "supervision": f"{what} deadline {due} missed; still open, reported to the supervision office for notice",
    }[firing.level]


def _in_zone(value: datetime, cal: WorkCalendar) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"times must be timezone-aware, got the naive {value.isoformat()}")
    return value.astimezone(cal.tz)
