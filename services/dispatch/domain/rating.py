"""The enterprise's rating (回访) and closing: satisfied closes the appeal, unsatisfied reopens it (重办)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.dispatch.domain import rules
from services.dispatch.domain.checks import check_order
from services.dispatch.domain.issuing import base_fields, issue_order, unit_name
from services.dispatch.domain.outcome import Accepted, EventSpec, Outcome, Refused
from services.dispatch.domain.work_order import ActionPayload, AppealState, AppealStatus, OrderStatus, Role, WorkOrder
from shared.contracts import subjects
from shared.contracts.common import Rating
from shared.district import District


def apply_feedback(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                   appeal: AppealState, now: datetime) -> Outcome:
    """The enterprise rates the lead order's reply (回访).

    ``satisfied`` / ``basically_satisfied``: the order and the appeal close
    (``ct.appeal.closed``). ``unsatisfied``: the order is reopened (重办) and a new
    order goes to the same unit with ``reopen_count`` + 1 (``ct.appeal.reopened`` +
    ``ct.order.dispatched``). ``unit_code`` is not used: the rating is the enterprise's.
    """
    if refused := check_order(order, appeal):
        return refused
    assert order is not None
    try:
        rating = Rating(payload.rating) if payload.rating is not None else None
    except ValueError:
        rating = None
    if rating is None:
        return Refused.because(rules.RatingMustBeKnown, "rating: satisfied, basically_satisfied or unsatisfied")
    if order.role != Role.lead or order.status != OrderStatus.replied or appeal.status != AppealStatus.in_progress:
        return Refused.because(rules.OrderMustAwaitRating, "only a replied lead order of an open appeal can be rated")
    actor = payload.actor or payload.via or "enterprise"
    if rating in (Rating.satisfied, Rating.basically_satisfied):
        return _close(order, appeal, payload, actor, now, rating.value)
    reopened = replace(order, status=OrderStatus.reopened, closed_at=now)
    count = order.reopen_count + 1
    appeal, new_order, dispatched = issue_order(
        district, appeal, order.unit_code, Role.lead, now, actor,
        [f"reopened (重办) after an unsatisfied rating of order {order.order_id}"], payload,
        reopen_count=count, replaces=order,
    )
    reopened_event = EventSpec(subjects.APPEAL_REOPENED, {
        **base_fields(appeal, payload, actor, now), "order_id": new_order.order_id, "unit_code": order.unit_code,
        "unit": unit_name(district, order.unit_code), "reopen_count": count, "comment": payload.comment,
    })
    return Accepted(reopened, appeal, (reopened_event, dispatched), (new_order,))


def _close(order: WorkOrder, appeal: AppealState, payload: ActionPayload | None, actor: str, now: datetime,
           outcome: str) -> Accepted:
    closed = replace(order, status=OrderStatus.closed, closed_at=now)
    appeal = replace(appeal, status=AppealStatus.closed)
    event = EventSpec(subjects.APPEAL_CLOSED, {
        **base_fields(appeal, payload, actor, now), "outcome": outcome, "unit_codes": list(appeal.unit_codes),
    })
    return Accepted(closed, appeal, (event,))


def close_unrated(district: District, order: WorkOrder | None, appeal: AppealState, now: datetime) -> Outcome:
    """Close a replied lead order whose enterprise gave no rating in time; ``ct.appeal.closed`` (not_rated)."""
    if refused := check_order(order, appeal):
        return refused
    assert order is not None
    if order.role != Role.lead or order.status != OrderStatus.replied or appeal.status != AppealStatus.in_progress:
        return Refused.because(rules.OrderMustAwaitRating, "only a replied lead order of an open appeal closes unrated")
    return _close(order, appeal, None, "system", now, "not_rated")


def close_with_appeal(order: WorkOrder, now: datetime) -> WorkOrder:
    """An appeal's other order once the appeal closed: closed unless already final (no event of its own)."""
    return order if order.is_final else replace(order, status=OrderStatus.closed, closed_at=now,
                                                pending_extension_days=None, pending_extension_reason=None,
                                                paused_at=None, pause_reason=None, pauses=order.pauses_ended(now))
