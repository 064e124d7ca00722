"""Duplicates that follow their master (重复诉求并单): no order of their own, the master's reply, their own rating.

Intake names a likely duplicate's master in its registration (``duplicate_of``);
dispatch then routes nothing for it: the master's units get no second order.
The duplicate is kept as :attr:`~.work_order.AppealStatus.following`. When the
master's lead order is replied, each open follower gets ``ct.appeal.follower_replied``
(the master's order, unit and reply, the follower's own contact), so its
enterprise is asked to rate on its own appeal id. Its rating concerns only its
own appeal:

- satisfied / basically satisfied: the follower closes (``ct.appeal.closed``)
  naming no unit, so the units' ratings count the master once;
- unsatisfied: the follower stops following and becomes its own case: a lead
  order goes to the unit that replied (重办, ``ct.appeal.reopened`` +
  ``ct.order.dispatched``), counted from then on like any reopened appeal.

A split (``ct.appeal.split``) makes it a new appeal for routing: see
:func:`~.starting.start_appeal`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from services.dispatch.domain import rules
from services.dispatch.domain.issuing import base_fields, issue_order, unit_name
from services.dispatch.domain.outcome import Accepted, EventSpec, Outcome, Refused
from services.dispatch.domain.routing import RoutingInput, route
from services.dispatch.domain.starting import summarize
from services.dispatch.domain.work_order import ActionPayload, AppealState, AppealStatus, OrderStatus, Role, WorkOrder
from shared.contracts import subjects
from shared.contracts.common import Rating
from shared.contracts.events import AppealRegistered
from shared.district import District


def follow_master(district: District, registered: AppealRegistered) -> AppealState:
    """A registered duplicate as dispatch keeps it: following its master, no order, no event.

    Its category and limits are what the rules alone would route it as (no model:
    nothing is dispatched now); they matter if it is ever reopened on its own.
    """
    decision = route(district, RoutingInput.from_registered(registered))
    return AppealState(
        appeal_id=registered.appeal_id, received_at=registered.received_at, category=decision.category.name,
        deadline_days=decision.deadline_days, sign_hours=decision.sign_hours, status=AppealStatus.following,
        source_ref=registered.source_ref, correlation_id=registered.correlation_id, urgent=registered.urgent,
        summary=summarize(registered.content), enterprise_name=registered.enterprise.name,
        contact_phone=registered.contact.phone,
    )


def replied(order: WorkOrder | None) -> bool:
    """The master's lead order holds a reply a follower can be sent (replied, or closed after a reply)."""
    return (order is not None and order.role == Role.lead and order.reply is not None
            and order.status in (OrderStatus.replied, OrderStatus.closed))


def reach_follower(district: District, follower: AppealState, master_appeal_id: str, order: WorkOrder,
                   now: datetime) -> EventSpec | None:
    """``ct.appeal.follower_replied`` for an open follower of the master whose lead ``order`` was replied."""
    if follower.status != AppealStatus.following or not replied(order):
        return None
    return EventSpec(subjects.APPEAL_FOLLOWER_REPLIED, {
        **base_fields(follower, None, "system", now), "master_appeal_id": master_appeal_id,
        "order_id": order.order_id, "unit_code": order.unit_code, "unit": unit_name(district, order.unit_code),
        "reply": order.reply, "resolved": bool(order.resolved), "contact_phone": follower.contact_phone,
    })


def rate_follower(district: District, follower: AppealState, order: WorkOrder | None, payload: ActionPayload,
                  now: datetime) -> Outcome:
    """The follower's enterprise rates the master's reply (``order``, the one it was sent); see the module docstring."""
    if follower.status != AppealStatus.following or not replied(order):
        return Refused.because(rules.DuplicateIsRatedAfterItsMastersReply,
                               "this duplicate has no reply of its master to rate")
    assert order is not None
    try:
        rating = Rating(payload.rating) if payload.rating is not None else None
    except ValueError:
        rating = None
    if rating is None:
        return Refused.because(rules.RatingMustBeKnown, "rating: satisfied, basically_satisfied or unsatisfied")
    actor = payload.actor or payload.via or "enterprise"
    if rating in (Rating.satisfied, Rating.basically_satisfied):
        closed = replace(follower, status=AppealStatus.closed)
        event = EventSpec(subjects.APPEAL_CLOSED, {
            **base_fields(closed, payload, actor, now), "outcome": rating.value, "unit_codes": []})
        return Accepted(None, closed, (event,))
    own = replace(follower, status=AppealStatus.in_progress)
    own, new_order, dispatched = issue_order(
        district, own, order.unit_code, Role.lead, now, actor,
        [f"reopened (重办) after an unsatisfied rating of the master's reply (order {order.order_id})"], payload,
        reopen_count=1,
    )
    reopened = EventSpec(subjects.APPEAL_REOPENED, {
        **base_fields(own, payload, actor, now), "order_id": new_order.order_id, "unit_code": order.unit_code,
        "unit": unit_name(district, order.unit_code), "reopen_count": 1, "comment": payload.comment,
    })
    return Accepted(None, own, (reopened, dispatched), (new_order,))


@dataclass(frozen=True)
class Follower:
    """What dispatch keeps about a duplicate beside its appeal: its master, its registration, the reply it was sent."""

    appeal_id: str
    master_appeal_id: str
    similarity: float | None = None
    registration: AppealRegistered | None = None  # None: the split arrived before the registration
    replied_order_id: str | None = None
    replied_at: datetime | None = None
    split_at: datetime | None = None

    @property
    def follows(self) -> bool:
        """Still following (not split, not reopened on its own)."""
        return self.split_at is None
