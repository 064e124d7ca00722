"""The lead unit's (牵头单位) decisions: extensions (延期), returns (退单), redispatch (改派), dispatch by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.dispatch.domain import rules
from services.dispatch.domain.checks import check_lead, illegal, target_unit
from services.dispatch.domain.issuing import actor_of, base_fields, issue_order, order_event, unit_name
from services.dispatch.domain.outcome import Accepted, EventSpec, Outcome, Refused
from services.dispatch.domain.work_order import (
    ActionPayload,
    AppealState,
    AppealStatus,
    OrderStatus,
    Role,
    WorkOrder,
)
from shared.contracts import subjects
from shared.district import District, Unit


def grant_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit grants a pending extension; ``ct.order.extension_granted``.

    Grants ``days`` when given (more or fewer than asked), else the days asked for.
    """
    if refused := check_lead(district, order, unit_code, appeal, "grant extensions"):
        return refused
    assert order is not None
    if payload.days is not None and payload.days < 1:
        return Refused.because(rules.ExtensionDaysMustBePositive, "days: must be positive")
    if order.status != OrderStatus.signed or not order.extension_requested:
        return Refused.because(rules.ExtensionMustBePending, f"no extension request is waiting on order {order.order_id}")
    days = payload.days or order.pending_extension_days or 0
    new = replace(order, pending_extension_days=None, pending_extension_reason=None,
                  extension_days_granted=order.extension_days_granted + days)
    event = order_event(district, subjects.ORDER_EXTENSION_GRANTED, new, appeal, payload,
                        actor_of(payload, unit_code), now, days=days, total_extension_days=new.extension_days_granted)
    return Accepted(new, appeal, (event,))


def deny_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                   appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit denies a pending extension; the deadline stands; ``ct.order.extension_denied``."""
    if refused := check_lead(district, order, unit_code, appeal, "deny extensions"):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reason: required")
    if order.status != OrderStatus.signed or not order.extension_requested:
        return Refused.because(rules.ExtensionMustBePending, f"no extension request is waiting on order {order.order_id}")
    new = replace(order, pending_extension_days=None, pending_extension_reason=None)
    event = order_event(district, subjects.ORDER_EXTENSION_DENIED, new, appeal, payload,
                        actor_of(payload, unit_code), now, reason=payload.reason)
    return Accepted(new, appeal, (event,))


def _supersede(
    district: District, order: WorkOrder, appeal: AppealState, payload: ActionPayload, actor: str,
    now: datetime, target: Unit | None, why: str,
) -> tuple[WorkOrder, AppealState, list[EventSpec], tuple[WorkOrder, ...]]:
    """Cancel an order and hand its appeal to ``target`` (a new order, same role) or to the manual queue."""
    cancelled = replace(order, status=OrderStatus.cancelled, closed_at=now,
                        pending_extension_days=None, pending_extension_reason=None,
                        paused_at=None, pause_reason=None, pauses=order.pauses_ended(now))
    if target is None:
        if order.role == Role.lead:
            appeal = replace(appeal, status=AppealStatus.queued)
            queued = EventSpec(subjects.APPEAL_QUEUED, {
                **base_fields(appeal, payload, actor, now),
                "reasons": [f"{why}: the lead unit dispatches it by hand"], "summary": appeal.summary,
            })
            return cancelled, appeal, [queued], ()
        return cancelled, appeal, [], ()
    appeal, new_order, dispatched = issue_order(
        district, appeal, target.unit_code, order.role, now, actor,
        [f"{why}; redispatched by {district.lead_unit.name} → {target.name}"], payload, replaces=cancelled,
    )
    return cancelled, appeal, [dispatched], (new_order,)


def decide_return(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                  appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit decides a return (退单审核); ``ct.order.return_decided`` first.

    Rejected (``accept`` false): the order goes back to its unit, dispatched, to sign
    for. Accepted: the order is cancelled and, with ``unit_code``, a new order goes to
    that unit (+ ``ct.order.dispatched``); without one a lead order's appeal waits in
    the manual queue (+ ``ct.appeal.queued``).
    """
    if refused := check_lead(district, order, unit_code, appeal, "decide returns"):
        return refused
    assert order is not None
    if payload.accept is None:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "accept: required")
    target: Unit | None = None
    if payload.accept and payload.unit_code:
        found = target_unit(district, payload.unit_code)
        if isinstance(found, Refused):
            return found
        if found.unit_code == order.unit_code:
            return Refused.because(rules.OrderMustMoveToAnotherUnit,
                                   "unit_code: the order cannot go back to the unit whose return was accepted")
        target = found
    if order.status != OrderStatus.returned:
        return illegal(order, "decide the return of")
    actor = actor_of(payload, unit_code)
    decided = order_event(district, subjects.ORDER_RETURN_DECIDED, order, appeal, payload, actor, now,
                          accepted=bool(payload.accept))
    if not payload.accept:
        new = replace(order, status=OrderStatus.dispatched, return_reason=None, dispatched_at=now)
        return Accepted(new, appeal, (decided,))
    new, appeal, more, created = _supersede(district, order, appeal, payload, actor, now, target,
                                            f"return by {unit_name(district, order.unit_code)} accepted")
    return Accepted(new, appeal, (decided, *more), created)


def redispatch(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
               appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit moves a live order to another unit (改派): the order is cancelled, a new one dispatched.

    Events: ``ct.order.return_decided`` with ``accepted`` true for the old order,
    then ``ct.order.dispatched`` for the new one. The contract has no other event
    that ends an order, and the old order ends exactly as after an accepted
    return (its clocks stop, its unit is told), whether or not the unit had returned it.
    """
    if refused := check_lead(district, order, unit_code, appeal, "redispatch"):
        return refused
    assert order is not None
    found = target_unit(district, payload.unit_code)
    if isinstance(found, Refused):
        return found
    if found.unit_code == order.unit_code:
        return Refused.because(rules.OrderMustMoveToAnotherUnit, f"unit_code: order {order.order_id} is already with {found.name}")
    if not order.is_live:
        return illegal(order, "redispatch")
    actor = actor_of(payload, unit_code)
    ended = order_event(district, subjects.ORDER_RETURN_DECIDED, order, appeal, payload, actor, now, accepted=True)
    why = f"taken from {unit_name(district, order.unit_code)}"
    new, appeal, more, created = _supersede(district, order, appeal, payload, actor, now, found, why)
    return Accepted(new, appeal, (ended, *more), created)


def dispatch_by_hand(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                     appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit dispatches a queued appeal (人工派单) to ``unit_code`` with optional ``co_units``.

    One ``ct.order.dispatched`` per order created, the lead order first.
    """
    if unit_code != district.lead_unit.unit_code:
        return Refused.because(rules.OnlyLeadUnitMayDecide,
                               f"only the lead unit {district.lead_unit.name} may dispatch by hand")
    if order is not None:
        return Refused.because(rules.DispatchByHandTakesNoOrder,
                               "dispatch takes an appeal from the manual queue; use redispatch to move an order")
    target = target_unit(district, payload.unit_code)
    if isinstance(target, Refused):
        return target
    co: list[Unit] = []
    for code in payload.co_units:
        unit = target_unit(district, code, "co_units")
        if isinstance(unit, Refused):
            return unit
        if unit.unit_code == target.unit_code or unit in co:
            return Refused.because(rules.CoUnitsMustBeNamedOnce, f"co_units: {unit.name} is named twice")
        co.append(unit)
    if appeal.status != AppealStatus.queued:
        return Refused.because(rules.AppealMustBeQueued,
                               f"the appeal is {appeal.status.value}, not waiting in the manual queue")
    actor = actor_of(payload, unit_code)
    why = f"dispatched by hand by {district.lead_unit.name}"
    appeal, lead_order, first = issue_order(district, appeal, target.unit_code, Role.lead, now, actor, [why], payload)
    orders, events = [lead_order], [first]
    for unit in co:
        appeal, co_order, ev = issue_order(district, appeal, unit.unit_code, Role.co, now, actor, [why], payload)
        orders.append(co_order)
        events.append(ev)
    appeal = replace(appeal, status=AppealStatus.in_progress)
    return Accepted(None, appeal, tuple(events), tuple(orders))
