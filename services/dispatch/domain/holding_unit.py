"""The holding unit's actions on its order: sign (签收), return (退单), progress, extension (延期), reply, escalate,
pause (待补充材料) and resume."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.dispatch.domain import rules
from services.dispatch.domain.checks import check_holder, illegal
from services.dispatch.domain.issuing import actor_of, order_event
from services.dispatch.domain.outcome import Accepted, Outcome, Refused
from services.dispatch.domain.work_order import ActionPayload, AppealState, OrderStatus, WorkOrder
from shared.contracts import subjects
from shared.contracts.events import ClockPause
from shared.district import District


def sign_for(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
             appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit accepts a dispatched order (签收): dispatched → signed; ``ct.order.signed``."""
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if order.status != OrderStatus.dispatched:
        return illegal(order, "sign for")
    new = replace(order, status=OrderStatus.signed, signed_at=now)
    event = order_event(district, subjects.ORDER_SIGNED, new, appeal, payload, actor_of(payload, unit_code), now)
    return Accepted(new, appeal, (event,))


def return_order(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                 appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit says it is the wrong unit (退单): dispatched → returned; ``ct.order.returned``.

    Only before signing (signing accepts the order). Refused with
    ``return_limit_reached`` once the appeal was returned :data:`~.rules.MAX_RETURNS` times.
    """
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reason: required")
    if order.status != OrderStatus.dispatched:
        return illegal(order, "return")
    if appeal.return_count >= rules.MAX_RETURNS:
        return Refused.because(
            rules.ReturnsMustNotExceedLimit,
            f"this appeal was returned {appeal.return_count} times; the lead unit's decision is binding",
        )
    new = replace(order, status=OrderStatus.returned, return_reason=payload.reason)
    appeal = replace(appeal, return_count=appeal.return_count + 1)
    event = order_event(district, subjects.ORDER_RETURNED, new, appeal, payload, actor_of(payload, unit_code), now,
                        reason=payload.reason, return_count=appeal.return_count)
    return Accepted(new, appeal, (event,))


def report_progress(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit reports what it did on a signed order; ``ct.order.progressed``, no state change."""
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.note:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "note: required")
    if order.status != OrderStatus.signed:
        return illegal(order, "report progress on")
    event = order_event(district, subjects.ORDER_PROGRESSED, order, appeal, payload, actor_of(payload, unit_code), now,
                        note=payload.note)
    return Accepted(order, appeal, (event,))


def request_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                      appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit asks for more working days (延期) on a signed order; ``ct.order.extension_requested``.

    One request at a time: a second one before the lead unit decides is illegal.
    """
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.days or payload.days < 1:
        return Refused.because(rules.ExtensionDaysMustBePositive, "days: a positive number of working days is required")
    if not payload.reason:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reason: required")
    if order.status != OrderStatus.signed:
        return illegal(order, "ask for an extension on")
    if order.extension_requested:
        return Refused.because(rules.OneExtensionRequestAtATime, "an extension request is already waiting for the lead unit")
    new = replace(order, pending_extension_days=payload.days, pending_extension_reason=payload.reason)
    event = order_event(district, subjects.ORDER_EXTENSION_REQUESTED, new, appeal, payload,
                        actor_of(payload, unit_code), now, days=payload.days, reason=payload.reason)
    return Accepted(new, appeal, (event,))


def reply_to_appeal(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit answers (答复): signed → replied; ``ct.order.replied``.

    A pending extension request lapses. For the lead order the enterprise is then asked to rate the reply.
    """
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reply or payload.resolved is None:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reply, resolved: required")
    if order.status != OrderStatus.signed:
        return illegal(order, "reply to")
    new = replace(order, status=OrderStatus.replied, replied_at=now, reply=payload.reply, resolved=payload.resolved,
                  pending_extension_days=None, pending_extension_reason=None,
                  paused_at=None, pause_reason=None, pauses=order.pauses_ended(now))
    event = order_event(district, subjects.ORDER_REPLIED, new, appeal, payload, actor_of(payload, unit_code), now,
                        reply=payload.reply, resolved=payload.resolved, contact_phone=appeal.contact_phone)
    return Accepted(new, appeal, (event,))


def request_escalation(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                       appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit flags a signed order difficult or major (疑难或重大); ``ct.order.escalation_requested``.

    Once per order: escalation then reports it to the district leader.
    """
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reason: required")
    if order.status != OrderStatus.signed:
        return illegal(order, "escalate")
    if order.escalated:
        return Refused.because(rules.OrderIsEscalatedOnce, "this order is already flagged difficult")
    new = replace(order, escalated=True)
    event = order_event(district, subjects.ORDER_ESCALATION_REQUESTED, new, appeal, payload,
                        actor_of(payload, unit_code), now, reason=payload.reason)
    return Accepted(new, appeal, (event,))


def pause_clock(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit pauses its handling clock while it waits for the enterprise (待补充材料); ``ct.order.paused``.

    Only a signed order, one pause at a time, at most ``pauses.max_per_order`` per
    order. The pause counts at most ``pauses.max_working_days`` (snapshotted on the
    pause: a later configuration change does not rewrite it).
    """
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused.because(rules.RequiredFieldsMustBeGiven, "reason: required")
    if order.status != OrderStatus.signed:
        return illegal(order, "pause the clock of")
    if order.paused:
        return Refused.because(rules.ClockIsPausedOnce, f"order {order.order_id} is paused since {order.paused_at}")
    if order.own_pauses >= district.pauses.max_per_order:
        return Refused.because(rules.PausesMustNotExceedLimit,
                               f"order {order.order_id} was paused {order.own_pauses} times; "
                               f"at most {district.pauses.max_per_order}")
    pause = ClockPause(pause_id=f"{order.order_id}:P{order.own_pauses + 1}", order_id=order.order_id,
                       started_at=now, max_working_days=district.pauses.max_working_days, reason=payload.reason)
    new = replace(order, paused_at=now, pause_reason=payload.reason, pauses=(*order.pauses, pause))
    event = order_event(district, subjects.ORDER_PAUSED, new, appeal, payload, actor_of(payload, unit_code), now,
                        pause=pause)
    return Accepted(new, appeal, (event,))


def resume_clock(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                 appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit resumes its paused handling clock; ``ct.order.resumed`` (escalation moves the deadline)."""
    if refused := check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if order.status != OrderStatus.signed:
        return illegal(order, "resume the clock of")
    if not order.paused:
        return Refused.because(rules.ClockMustBePausedToResume, f"order {order.order_id} is not paused")
    pauses = order.pauses_ended(now)
    new = replace(order, paused_at=None, pause_reason=None, pauses=pauses)
    event = order_event(district, subjects.ORDER_RESUMED, new, appeal, payload, actor_of(payload, unit_code), now,
                        pause=pauses[-1], note=payload.note)
    return Accepted(new, appeal, (event,))
