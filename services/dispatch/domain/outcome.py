"""What a decision returns: :class:`Accepted` (new states and their events) or :class:`Refused` (a broken rule)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.dispatch.domain import rules
from services.dispatch.domain.routing import RoutingDecision
from services.dispatch.domain.work_order import AppealState, AppealStatus, WorkOrder
from shared.contracts import subjects
from shared.contracts.events import DomainEvent


@dataclass(frozen=True)
class EventSpec:
    """An event to publish: its subject (``shared.contracts.subjects``) and the fields of its model.

    ``fields`` holds everything but ``event_id`` (the outbox assigns it), including
    ``occurred_at``, ``appeal_id``, ``source_ref``, ``correlation_id``, ``actor``
    and, for work-order events, ``order_id``, ``unit_code`` and ``unit``.
    """

    subject: str
    fields: Mapping[str, Any]

    @property
    def model(self) -> type:
        """The event model of ``shared.contracts.events`` for this subject."""
        return subjects.EVENTS[self.subject]

    def build(self, event_id: str = "", **overrides: Any) -> DomainEvent:
        """The validated event model (fields the model does not declare are dropped)."""
        return self.model(**{**self.fields, **overrides, "event_id": event_id})


@dataclass(frozen=True)
class Accepted:
    """An accepted action: the acted-on order after it, orders it created, the appeal after it, its events."""

    new_state: WorkOrder | None
    appeal: AppealState
    events: tuple[EventSpec, ...]
    new_orders: tuple[WorkOrder, ...] = ()
    routing: RoutingDecision | None = None

    @property
    def subjects(self) -> tuple[str, ...]:
        """The subjects of the events, in order."""
        return tuple(e.subject for e in self.events)

    @property
    def closes_appeal(self) -> bool:
        """The appeal was closed: the use case closes its other orders with :func:`close_with_appeal`."""
        return self.appeal.status == AppealStatus.closed


@dataclass(frozen=True)
class Refused:
    """A refused action: it changed nothing and caused no domain event.

    ``rule`` names the business rule it broke (:mod:`.rules`); ``reason`` is that
    rule's code, one of unknown_order, not_your_order, illegal_transition,
    return_limit_reached, invalid. Build one with :meth:`because`; a bare
    ``Refused(reason, detail)`` names the reason's general rule
    (:data:`rules.GENERAL_RULES`). :meth:`rejection` gives the ``ct.order.rejected``
    notice the use case publishes to tell the unit.
    """

    reason: str
    detail: str = ""
    rule: str = ""

    def __post_init__(self) -> None:
        if not self.rule and (general := rules.GENERAL_RULES.get(self.reason)):
            object.__setattr__(self, "rule", general.name)

    @classmethod
    def because(cls, rule: rules.Rule, detail: str = "") -> Refused:
        """The refusal of an action that broke ``rule``; ``detail`` says how (default: the rule's message)."""
        return cls(rule.reason, detail or rule.message, rule.name)

    def rejection(
        self, *, action: str, unit_code: str, now: datetime, order_id: str | None = None,
        appeal_id: str | None = None, action_id: str | None = None,
    ) -> EventSpec:
        """The ``ct.order.rejected`` notice for this refusal, naming its rule."""
        return EventSpec(subjects.ORDER_REJECTED, {
            "occurred_at": now, "action_id": action_id, "action": action, "unit_code": unit_code,
            "order_id": order_id, "appeal_id": appeal_id, "reason": self.reason, "detail": self.detail,
            "rule": self.rule or None,
        })


Outcome = Accepted | Refused
