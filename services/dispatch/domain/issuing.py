"""Issuing a work order and the fields of the events an order's change causes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from services.dispatch.domain.outcome import EventSpec
from services.dispatch.domain.work_order import ActionPayload, AppealState, OrderStatus, Role, WorkOrder, order_id_for
from shared.contracts import subjects
from shared.contracts.events import OrderPolicy
from shared.district import District


def unit_name(district: District, code: str) -> str:
    """A unit's name for an event, or its code when the district no longer has it."""
    try:
        return district.unit(code).name
    except KeyError:
        return code


def base_fields(appeal: AppealState, payload: ActionPayload | None, actor: str, now: datetime) -> dict[str, Any]:
    """The fields every dispatch event carries: when, which appeal, its correlation id, who acted."""
    correlation = (payload.correlation_id if payload else None) or appeal.correlation_id
    return {
        "occurred_at": now, "appeal_id": appeal.appeal_id, "source_ref": appeal.source_ref,
        "correlation_id": correlation, "actor": actor,
    }


def order_event(
    district: District, subject: str, order: WorkOrder, appeal: AppealState, payload: ActionPayload | None,
    actor: str, now: datetime, **fields: Any,
) -> EventSpec:
    """An event about ``order``: the base fields, the order and its unit, then ``fields``."""
    base = base_fields(appeal, payload, actor, now)
    base.update(order_id=order.order_id, unit_code=order.unit_code, unit=unit_name(district, order.unit_code))
    base.update(fields)
    return EventSpec(subject, base)


def escalation_policy(district: District, appeal: AppealState) -> OrderPolicy:
    """The escalation policy snapshotted on a dispatched order: clocks and who is told."""
    leader = district.leader_for(appeal.category)
    return OrderPolicy(
        deadline_days=appeal.deadline_days,
        sign_hours=appeal.sign_hours,
        district_leader=leader.leader_id if leader else None,
        lead_unit=district.lead_unit.unit_code,
        supervision_office=district.supervision_office.unit_code,
    )


def issue_order(
    district: District, appeal: AppealState, unit_code: str, role: Role, now: datetime, actor: str,
    reasons: list[str], payload: ActionPayload | None = None, reopen_count: int = 0,
    replaces: WorkOrder | None = None,
) -> tuple[AppealState, WorkOrder, EventSpec]:
    """A new dispatched order of the appeal to ``unit_code``: the appeal after it, the order, ``ct.order.dispatched``."""
    number = appeal.orders_issued + 1
    order = WorkOrder(
        order_id=order_id_for(appeal.appeal_id, number), appeal_id=appeal.appeal_id, unit_code=unit_code,
        role=role, status=OrderStatus.dispatched, reopen_count=reopen_count, dispatched_at=now,
        replaces_order_id=replaces.order_id if replaces else None,
        pauses=replaces.pauses if replaces and not reopen_count else (),
    )
    units = appeal.unit_codes if unit_code in appeal.unit_codes else (*appeal.unit_codes, unit_code)
    appeal = replace(appeal, orders_issued=number, unit_codes=units)
    event = order_event(
        district, subjects.ORDER_DISPATCHED, order, appeal, payload, actor, now,
        role=role.value, category=appeal.category, reasons=list(reasons), received_at=appeal.received_at,
        deadline_days=appeal.deadline_days, sign_hours=appeal.sign_hours, urgent=appeal.urgent,
        reopen_count=reopen_count, policy=escalation_policy(district, appeal), summary=appeal.summary,
        enterprise_name=appeal.enterprise_name, replaces_order_id=order.replaces_order_id,
        pauses=list(order.pauses),
    )
    return appeal, order, event


def actor_of(payload: ActionPayload, unit_code: str) -> str:
    """Who acted: the person named in the payload, else the unit."""
    return payload.actor or unit_code
