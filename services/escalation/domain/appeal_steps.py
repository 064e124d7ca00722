"""Escalations heard once per appeal: the district leader and the supervision office (通报).

An appeal may have several work orders (主办 and 协办), each with its own clocks
and ladder. The overdue notice (督办) goes to each late unit for its own order,
but the district leader and the supervision office hear of the *appeal* once
per level, naming every late unit (:data:`APPEAL_LEVELS`).

The rule (:func:`late_orders`): the first order of the appeal whose step at a
level fires makes one event for the appeal at that level, naming every order
of the appeal late at that moment (:func:`services.escalation.domain.events.appeal_step_event`): the orders whose step fires now, and every
order whose handling clock still runs past its deadline. An order that reaches
the level later (a later deadline, a granted extension) is recorded as having
reached it (its step is marked fired with the event that announced the
level) but makes no second event for that level.

A reopened order (重办, ``reopen_count`` n) is a new failure after the
enterprise was unsatisfied: its steps belong to round n, announced once each
again (:class:`AppealStep`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.escalation.domain.events import stable_event_id
from services.escalation.domain.ladder import overdue_seconds
from services.escalation.domain.order_clock import OrderFacts, OrderPlan
from shared.contracts.common import SHANGHAI
from shared.contracts.events import LateOrder

#: The levels heard once per appeal (and round); the others are per order.
APPEAL_LEVELS: frozenset[str] = frozenset({"district_leader", "supervision"})


@dataclass(frozen=True, order=True)
class AppealStep:
    """Identity of an appeal's escalation at one level: it is announced once (unique in PostgreSQL).

    ``round`` is the reopening round (``reopen_count`` of the order whose step fired):
    0 for the orders first dispatched, n for the n-th reopening (重办).
    """

    appeal_id: str
    round: int
    level: str

    @property
    def event_id(self) -> str:
        """The id of the one event of this step, stable, so a repeat is dropped."""
        return stable_event_id(self.appeal_id, "appeal-step", str(self.round), self.level)


def appeal_step_of(facts: OrderFacts, level: str) -> AppealStep | None:
    """The appeal step an order's ``level`` step belongs to; ``None`` for a level heard per order."""
    if level not in APPEAL_LEVELS:
        return None
    return AppealStep(facts.appeal_id, facts.reopen_count, level)


def late_orders(
    now: datetime,
    firing: Mapping[str, datetime],
    appeal_orders: Iterable[tuple[OrderFacts, OrderPlan]],
) -> list[LateOrder]:
    """Every order of an appeal late at ``now``, earliest deadline first (then by order id).

    ``firing``: order id → deadline of the orders whose step fires now (always
    named, even when the clock stopped after the step fell due but before it
    fired). ``appeal_orders``: every stored order of the appeal with its plan;
    an order whose handling clock runs and whose deadline has passed is named too.
    """
    facts_by_id: dict[str, OrderFacts] = {}
    due_by_id: dict[str, datetime] = dict(firing)
    for facts, plan in appeal_orders:
        facts_by_id[facts.order_id] = facts
        if facts.order_id in due_by_id:
            continue
        if "handling" in plan.running and plan.handling_due is not None and plan.handling_due <= now:
            due_by_id[facts.order_id] = plan.handling_due
    missing = set(firing) - set(facts_by_id)
    if missing:
        raise ValueError(f"orders {sorted(missing)} fire but are not among the appeal's orders")
    out = []
    for order_id, due in sorted(due_by_id.items(), key=lambda kv: (kv[1], kv[0])):
        f = facts_by_id[order_id]
        out.append(LateOrder(order_id=order_id, unit_code=f.unit_code, unit=f.unit, role=f.role,
                             due_at=due.astimezone(SHANGHAI), overdue_seconds=overdue_seconds(due, now)))
    return out
