"""The checks an action starts with; each returns the :class:`Refused` of the rule it finds broken, or None."""

from __future__ import annotations

from services.dispatch.domain import rules
from services.dispatch.domain.issuing import unit_name
from services.dispatch.domain.outcome import Refused
from services.dispatch.domain.work_order import AppealState, WorkOrder
from shared.district import District, Unit, UnitKind


def check_order(order: WorkOrder | None, appeal: AppealState) -> Refused | None:
    """The order exists and is one of the appeal's (:class:`~.rules.OrderMustExist`, ``OrderMustBelongToAppeal``)."""
    if order is None:
        return Refused.because(rules.OrderMustExist, "no such work order")
    if order.appeal_id != appeal.appeal_id:
        return Refused.because(rules.OrderMustBelongToAppeal,
                               f"order {order.order_id} belongs to appeal {order.appeal_id}, not {appeal.appeal_id}")
    return None


def check_holder(district: District, order: WorkOrder | None, unit_code: str, appeal: AppealState) -> Refused | None:
    """:func:`check_order`, then the acting unit holds the order (``OrderMustBeHeldByActingUnit``)."""
    if refused := check_order(order, appeal):
        return refused
    assert order is not None
    if order.unit_code != unit_code:
        return Refused.because(rules.OrderMustBeHeldByActingUnit,
                               f"order {order.order_id} is held by {unit_name(district, order.unit_code)}")
    return None


def check_lead(
    district: District, order: WorkOrder | None, unit_code: str, appeal: AppealState, what: str,
) -> Refused | None:
    """:func:`check_order`, then the acting unit is the lead unit (``OnlyLeadUnitMayDecide``); ``what`` it may do."""
    if refused := check_order(order, appeal):
        return refused
    if unit_code != district.lead_unit.unit_code:
        return Refused.because(rules.OnlyLeadUnitMayDecide, f"only the lead unit {district.lead_unit.name} may {what}")
    return None


def illegal(order: WorkOrder, action: str) -> Refused:
    """The refusal of ``action`` in the order's current state (``ActionMustBeLegalInState``)."""
    return Refused.because(rules.ActionMustBeLegalInState, f"cannot {action} an order that is {order.status.value}")


def target_unit(district: District, code: str | None, field_name: str = "unit_code") -> Unit | Refused:
    """The unit named by ``code`` that an order is sent to, or the refusal saying why it cannot be."""
    if not code:
        return Refused.because(rules.RequiredFieldsMustBeGiven, f"{field_name}: required")
    try:
        unit = district.unit(code)
    except KeyError:
        return Refused.because(rules.TargetUnitMustExist, f"{field_name}: unknown unit {code!r}")
    if unit.kind == UnitKind.supervision:
        return Refused.because(rules.TargetUnitMustHandleOrders, f"{field_name}: {unit.name} does not handle work orders")
    return unit
