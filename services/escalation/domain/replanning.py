"""Re-planning after a revised calendar: which running deadlines move, by how much, and the notice of it.

A newly loaded State Council year, a local override added or a newer
``chinese-calendar`` changes what :func:`plan_order` gives for an order whose
deadline was published before. :func:`pending_moves` compares the plan under the
current calendar with the deadlines published (what the unit was told): a
running clock whose deadline differs moves. The move itself goes through the
same path as an extension (``use_cases.apply_events``: firings reconciled,
``ct.deadline.set`` staged), plus ``ct.deadline.moved`` (:func:`deadline_moved_event`)
for the unit, with an id stable per (order, clock, from, to): a second run finds
nothing to move, a repeated one tells nobody twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.escalation.domain.events import stable_event_id
from services.escalation.domain.ladder import CLOCKS, Clock
from services.escalation.domain.order_clock import OrderFacts, OrderPlan
from shared.contracts.common import SHANGHAI
from shared.contracts.events import DeadlineMoved
from shared.workcalendar import WorkCalendar


@dataclass(frozen=True)
class DeadlineMove:
    """One running deadline a revised calendar moves: from what the unit was told to the new plan."""

    order_id: str
    appeal_id: str
    unit_code: str
    clock: Clock
    previous_due: datetime
    due: datetime
    working_days: int
    calendar_days: int

    def to_dict(self) -> dict:
        """As JSON: times in +08:00."""
        return {"order_id": self.order_id, "appeal_id": self.appeal_id, "unit_code": self.unit_code,
                "clock": self.clock, "from": self.previous_due.astimezone(SHANGHAI).isoformat(),
                "to": self.due.astimezone(SHANGHAI).isoformat(), "working_days": self.working_days,
                "calendar_days": self.calendar_days}

    def line(self) -> str:
        """One line of the printed diff."""
        sign = "+" if self.working_days >= 0 else ""
        csign = "+" if self.calendar_days >= 0 else ""
        return (f"{self.order_id}  {self.unit_code}  {self.clock}  "
                f"{self.previous_due.astimezone(SHANGHAI):%Y-%m-%d %H:%M} -> {self.due.astimezone(SHANGHAI):%Y-%m-%d %H:%M}"
                f"  {sign}{self.working_days} working day(s), {csign}{self.calendar_days} calendar day(s)")


def move_of(facts: OrderFacts, clock: Clock, previous: datetime, due: datetime, cal: WorkCalendar) -> DeadlineMove:
    """The move of ``clock`` from ``previous`` to ``due``, counted on ``cal`` (the revised calendar)."""
    return DeadlineMove(
        order_id=facts.order_id, appeal_id=facts.appeal_id, unit_code=facts.unit_code, clock=clock,
        previous_due=previous, due=due, working_days=cal.working_days_between(previous, due),
        calendar_days=(due.astimezone(cal.tz).date() - previous.astimezone(cal.tz).date()).days,
    )


def pending_moves(facts: OrderFacts, plan: OrderPlan, published: Mapping[Clock, datetime | None],
                  cal: WorkCalendar) -> list[DeadlineMove]:
    """The running clocks whose published deadline differs from ``plan`` (a clock never published is not a move)."""
    moves = []
    for clock in CLOCKS:
        due, before = plan.due(clock), published.get(clock)
        if clock in plan.running and due is not None and before is not None and before != due:
            moves.append(move_of(facts, clock, before, due, cal))
    return moves


def deadline_moved_event(move: DeadlineMove, facts: OrderFacts, reason: str, now: datetime) -> DeadlineMoved:
    """``ct.deadline.moved`` for the unit; its id is stable for (order, clock, from, to)."""
    event_id = stable_event_id(move.order_id, "moved", move.clock, move.previous_due.isoformat(), move.due.isoformat())
    return DeadlineMoved(
        event_id=event_id, occurred_at=now.astimezone(SHANGHAI), appeal_id=facts.appeal_id,
        source_ref=facts.source_ref, correlation_id=facts.correlation_id, actor="system",
        order_id=facts.order_id, unit_code=facts.unit_code, unit=facts.unit, clock=move.clock,
        previous_due_at=move.previous_due.astimezone(SHANGHAI), due_at=move.due.astimezone(SHANGHAI),
        working_days=move.working_days, calendar_days=move.calendar_days, reason=reason, summary=facts.summary,
    )
