"""Paused clocks (待补充材料): what a pause counts, and where it moves a clock's steps.

A handling unit pauses its handling clock while it waits for the enterprise
(``ct.order.paused``) and resumes it (``ct.order.resumed``). The pauses are data
on the clock (:class:`~shared.contracts.events.ClockPause`: wall times and the
longest the pause counts), kept with the order's facts and carried to an order
that replaces it (``OrderDispatched.pauses``), so a return, a redispatch, a
category or a policy change keeps them: nothing here reads the policy.

What a pause counts (:func:`counted_pauses`), in working time on the calendar:

* from its start to its resume, at most ``max_working_days`` (past that the clock
  runs again by itself); an open pause counts as if it ran its full length, so
  the clock's steps are planned for the moment it would run again by itself;
* a stop of the clock (a reply, a redispatch, the appeal closed) ends it;
* a pause starting before the clock started (a reopened order's new clock) or at
  or after the deadline as moved by the pauses before it does not count: an
  overdue unit cannot pause its way out of the ladder.

Where it moves the steps (:func:`shift`): a moment of the un-paused clock after a
pause's start moves by that pause's working time, so no step falls inside a
pause and the deadline moves by the paused working time. A step keeps the
deadline it had when its time came (:func:`due_as_of`): a step that fell before a
pause is the same step (same key) when the clock is re-planned after the resume,
and does not fire again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.contracts.events import ClockPause
from shared.workcalendar import WorkCalendar


@dataclass(frozen=True)
class CountedPause:
    """A pause as the clock counts it: its start, its effective end, its working seconds, whether it is open."""

    pause_id: str
    order_id: str
    start: datetime
    end: datetime
    seconds: float
    open: bool
    reason: str = ""


def merge_pauses(a: Iterable[ClockPause], b: Iterable[ClockPause]) -> tuple[ClockPause, ...]:
    """The pauses of ``a`` and ``b`` together, by id; commutative and idempotent.

    The same pause reported twice keeps the earliest end known (a resume wins
    over the open pause of ``ct.order.paused``).
    """
    merged: dict[str, ClockPause] = {}
    for pause in (*a, *b):
        known = merged.get(pause.pause_id)
        if known is None:
            merged[pause.pause_id] = pause
            continue
        ends = [e for e in (known.ended_at, pause.ended_at) if e is not None]
        merged[pause.pause_id] = known.model_copy(update={"ended_at": min(ends) if ends else None,
                                                          "started_at": min(known.started_at, pause.started_at)})
    return tuple(sorted(merged.values(), key=lambda p: (p.started_at, p.pause_id)))


def counted_pauses(pauses: Iterable[ClockPause], started_at: datetime, due_at: datetime, stopped_at: datetime | None,
                   cal: WorkCalendar, order_id: str | None = None) -> list[CountedPause]:
    """The pauses a clock started at ``started_at`` with the un-paused deadline ``due_at`` counts, in start order.

    ``order_id``: count only that order's own pauses (the unit's own clock).
    """
    counted: list[CountedPause] = []
    due = due_at
    for p in sorted(pauses, key=lambda p: (p.started_at, p.pause_id)):
        if order_id is not None and p.order_id != order_id:
            continue
        if p.started_at < started_at or p.started_at >= due:
            continue
        if stopped_at is not None and p.started_at >= stopped_at:
            continue
        longest = cal.add_working_hours(p.started_at, p.max_working_days * cal.working_day_seconds / 3600)
        end = min(p.ended_at, longest) if p.ended_at is not None else longest
        if stopped_at is not None:
            end = min(end, stopped_at)
        seconds = max(0.0, cal.working_seconds_between(p.started_at, end))
        counted.append(CountedPause(p.pause_id, p.order_id, p.started_at, end, seconds,
                                    open=p.ended_at is None and stopped_at is None,
                                    reason=p.reason))
        if seconds:
            due = cal.add_working_hours(due, seconds / 3600)
    return counted


def shift(moment: datetime, counted: Sequence[CountedPause], cal: WorkCalendar,
          before: datetime | None = None) -> datetime:
    """Where ``moment`` of the un-paused clock falls with the pauses (only those starting before ``before``)."""
    real = moment
    for c in counted:
        if before is not None and c.start >= before:
            break
        if real > c.start and c.seconds:
            real = cal.add_working_hours(real, c.seconds / 3600)
    return real


def due_as_of(due_at: datetime, fire_at: datetime, counted: Sequence[CountedPause], cal: WorkCalendar) -> datetime:
    """The deadline as it stood when a step at ``fire_at`` came: moved by the pauses that started before it."""
    return shift(due_at, counted, cal, before=fire_at)


def paused_seconds(counted: Sequence[CountedPause]) -> int:
    """Working seconds of the ended pauses (an open one is not over yet)."""
    return int(sum(c.seconds for c in counted if not c.open))


def open_pause(counted: Sequence[CountedPause]) -> CountedPause | None:
    """The pause in progress, if any (its ``end`` is when the clock runs again by itself)."""
    return next((c for c in reversed(counted) if c.open), None)
