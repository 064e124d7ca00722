"""Dispatch's HTTP API for units: list and work their orders with a bearer token.

The same semantics as ``ct.in.order.<unit_code>.<action>``: a request body
becomes the same command (``shared.contracts.inbound.UnitCommand``) and goes
through the same use case, :func:`services.dispatch.use_cases.act`. A unit sees
only its own orders; the lead unit sees all and also dispatches, re-dispatches
and decides. Refusals answer problem+json with the refusal's ``reason`` and the
``rule`` it broke: 403 not_your_order, 404 unknown_order, 409 illegal_transition
or return_limit_reached, 422 invalid (with field errors).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Body, Depends, Security
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field, model_validator

from services.dispatch import use_cases
from services.dispatch.domain import rules
from services.dispatch.unit_of_work import DispatchUnitOfWork
from shared import clock
from shared.contracts import FieldError
from shared.contracts import inbound as inb
from shared.contracts.events import RoutingCandidate
from shared.district import District, Unit, UnitKind, unit_of_token
from shared.http import CURSOR, LIMIT, Page, ProblemError, bearer, bearer_token, decode_cursor, page_of, problems
from shared.service import Service

OrderAction = StrEnum("OrderAction", {name: name for name in inb.ORDER_ACTIONS})
"""The ``{action}`` of ``POST /orders/{order_id}/{action}``: every unit action on an existing order (from the commands)."""


class OrderView(BaseModel):
    """A work order as a unit sees it on its list."""

    order_id: str
    appeal_id: str
    unit_code: str
    role: str = Field(description="lead (主办) or co (协办).")
    status: str = Field(description="dispatched, signed, returned, replied, closed, reopened or cancelled.")
    reopen_count: int
    dispatched_at: datetime | None
    signed_at: datetime | None
    replied_at: datetime | None
    closed_at: datetime | None
    due_at: datetime | None = Field(description="The handling deadline (from escalation's clocks).")
    sign_due_at: datetime | None = Field(description="The sign-for deadline.")
    pending_extension_days: int | None = Field(description="Days asked for in an extension request still waiting.")
    extension_days_granted: int
    escalation_level: str | None = Field(description="The ladder step the order reached.")
    paused_at: datetime | None = Field(None, description="The handling clock is paused (待补充材料) since then.")
    pause_reason: str | None = Field(None, description="What the unit waits for from the enterprise.")
    paused_count: int = Field(0, description="Pauses of the appeal's handling clock this order knows (its own and "
                                             "those of the orders it replaces).")
    unit_due_at: datetime | None = Field(None, description="A re-dispatched order's own clock: from its sign-for "
                                                           "(escalation's `unit` clock).")

    @model_validator(mode="before")
    @classmethod
    def _paused_count(cls, row: Any) -> Any:
        if isinstance(row, dict) and "pauses" in row and "paused_count" not in row:
            row = {**row, "paused_count": len(row["pauses"] or [])}
        return row
    summary: str
    enterprise_name: str | None
    category: str
    received_at: datetime
    overdue: bool = Field(description="Past its handling deadline and still with the unit (as of the list's first page).")
    reasons: list[str] = Field(description="Why the order went to this unit.")


class QueuedAppeal(BaseModel):
    """An appeal waiting in the lead unit's manual queue."""

    appeal_id: str
    summary: str
    category: str
    received_at: datetime
    routing: dict[str, Any] = Field(description="Why routing was not clear: candidates, scores, reasons.")
    candidates: list[RoutingCandidate] = Field(
        default_factory=list,
        description="The three best candidates, best first, with score, the routing model's confidence and reasons: "
                    "`POST /appeals/{appeal_id}/dispatch` with one's `unit_code` dispatches it in one click.")

    @model_validator(mode="before")
    @classmethod
    def _candidates_from_routing(cls, row: Any) -> Any:
        if isinstance(row, dict) and "candidates" not in row:
            routing = row.get("routing") or {}
            if isinstance(routing, str):
                routing = json.loads(routing)
            row = {**row, "routing": routing,
                   "candidates": [c for c in routing.get("candidates", [])[:3] if "unit" in c]}
        return row


class ActionResponse(BaseModel):
    """An accepted action (a refusal answers problem+json instead)."""

    accepted: bool = True
    duplicate: bool = Field(False, description="The action id was used before: nothing was done again.")
    subjects: list[str] = Field(default_factory=list, description="The events it published.")
    order_ids: list[str] = Field(default_factory=list, description="The orders it changed or created.")


REFUSAL_STATUS = {rules.UNKNOWN_ORDER: 404, rules.NOT_YOUR_ORDER: 403, rules.ILLEGAL_TRANSITION: 409,
                  rules.RETURN_LIMIT_REACHED: 409, rules.INVALID: 422}
_FIELD_DETAIL = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$")


def _body_doc(commands: tuple[type[inb.Command], ...], given: str) -> str:
    lines = [f"`{c.action_name()}`: " + (", ".join(
        f"{name}{'' if f.is_required() else '?'}" for name, f in c.model_fields.items()
        if name not in ("action", "action_id", "actor", "order_id", "appeal_id")) or "nothing more") for c in commands]
    return f"The command's fields ({given}); `?` marks an optional one. " + "; ".join(lines) + "."


def register(service: Service, district: District) -> None:
    """Add the work-order routes to the service's app."""
    router = APIRouter(tags=["work orders"])

    def current_unit(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Unit:
        unit = unit_of_token(district.units, bearer_token(credentials))
        if unit is None:
            raise ProblemError(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return unit

    def is_lead(unit: Unit) -> bool:
        return unit.kind == UnitKind.lead

    def uow() -> DispatchUnitOfWork:
        return service.unit_of_work()  # type: ignore[return-value]

    @router.get("/orders", response_model=Page[OrderView], responses=problems(401, 422),
                summary="The unit's work orders, overdue first, then by deadline (the lead unit sees all)")
    async def list_orders(status: str | None = None, limit: int = LIMIT, cursor: str | None = CURSOR,
                          paused: bool | None = None,
                          unit: Unit = Depends(current_unit)) -> Page[OrderView]:
        position = decode_cursor(cursor)
        try:
            as_of = datetime.fromisoformat(position["as_of"]) if position else clock.now()
            after = (int(position["late"]), str(position["due"]), str(position["order_id"])) if position else None
        except (KeyError, TypeError, ValueError):
            raise ProblemError(422, "invalid cursor", errors=[FieldError(field="cursor", message="not a cursor of this list")]) from None
        async with uow() as work:
            rows = await work.appeals.list_orders(None if is_lead(unit) else unit.unit_code, status, as_of,
                                                  limit + 1, after, paused=paused)
        page = page_of(rows, limit, lambda r: {"as_of": as_of.isoformat(), "late": r["late"], "due": r["due"],
                                              "order_id": r["order_id"]})
        return Page[OrderView](items=[OrderView.model_validate(r) for r in page.items], next_cursor=page.next_cursor,
                               limit=limit)

    @router.get("/orders/{order_id}", response_model=OrderView, responses=problems(401, 404), summary="One work order")
    async def get_order(order_id: str, unit: Unit = Depends(current_unit)) -> OrderView:
        async with uow() as work:
            rows = await work.appeals.list_orders(None if is_lead(unit) else unit.unit_code, None, clock.now(), 1,
                                                  order_id=order_id)
        if rows:
            return OrderView.model_validate(rows[0])
        # another unit's order answers as if it did not exist
        raise ProblemError(404, f"no order {order_id} for {unit.name}", reason=rules.UNKNOWN_ORDER,
                           rule=rules.OrderMustExist.name)

    order_commands = tuple(c for c in inb.UNIT_COMMANDS if c.action_name() in inb.ORDER_ACTIONS)

    @router.post("/orders/{order_id}/{action}", response_model=ActionResponse,
                 responses=problems(401, 403, 404, 409, 422),
                 summary="Act on an order: " + ", ".join(inb.UNIT_ACTIONS) + "; lead unit: "
                         + ", ".join(a for a in inb.LEAD_ACTIONS if a in inb.ORDER_ACTIONS))
    async def order_action(order_id: str, action: OrderAction,
                           body: dict[str, Any] = Body(description=_body_doc(order_commands, "besides `action_id` "
                                                                             "and `actor`, every action needs them")),
                           unit: Unit = Depends(current_unit)) -> ActionResponse:
        return await _act(unit, action.value, {**body, "order_id": order_id})

    @router.post("/appeals/{appeal_id}/dispatch", response_model=ActionResponse,
                 responses=problems(401, 403, 404, 409, 422),
                 summary="Lead unit: dispatch an appeal from the manual queue by hand")
    async def dispatch_by_hand(appeal_id: str,
                               body: dict[str, Any] = Body(description=_body_doc((inb.DispatchByHand,), "with "
                                                                                 "`action_id` and `actor`")),
                               unit: Unit = Depends(current_unit)) -> ActionResponse:
        return await _act(unit, inb.DispatchByHand.action_name(), {**body, "appeal_id": appeal_id})

    @router.get("/queue", response_model=Page[QueuedAppeal], responses=problems(401, 403, 422),
                summary="Lead unit: appeals waiting to be dispatched by hand, the longest waiting first")
    async def manual_queue(limit: int = LIMIT, cursor: str | None = CURSOR,
                           unit: Unit = Depends(current_unit)) -> Page[QueuedAppeal]:
        if not is_lead(unit):
            raise ProblemError(403, "only the lead unit sees the manual queue", reason=rules.NOT_YOUR_ORDER,
                               rule=rules.OnlyLeadUnitMayDecide.name)
        position = decode_cursor(cursor)
        try:
            after = (datetime.fromisoformat(position["created_at"]), str(position["appeal_id"])) if position else None
        except (KeyError, TypeError, ValueError):
            raise ProblemError(422, "invalid cursor", errors=[FieldError(field="cursor", message="not a cursor of this list")]) from None
        async with uow() as work:
            rows = await work.appeals.queued(limit + 1, after)
        page = page_of(rows, limit, lambda r: {"created_at": r["created_at"].isoformat(), "appeal_id": r["appeal_id"]})
        return Page[QueuedAppeal](items=[QueuedAppeal.model_validate(r) for r in page.items],
                                  next_cursor=page.next_cursor, limit=limit)

    async def _act(unit: Unit, action: str, body: dict[str, Any]) -> ActionResponse:
        command, errors = inb.parse_unit_command(action, body)
        if command is None:
            raise ProblemError(422, "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors,
                               reason=rules.INVALID, rule=rules.ActionMustBeWellFormed.name)
        async with uow() as work:
            result = await use_cases.act(work, district, unit.unit_code, command, clock.now())
        if not result.accepted:
            raise _refusal(result)
        return ActionResponse(duplicate=result.duplicate, subjects=list(result.subjects),
                              order_ids=list(result.order_ids))

    service.http.include_router(router)


def _refusal(result: use_cases.ActionResult) -> ProblemError:
    """The problem+json of a refused action: its status, reason, rule, and a field error where the detail names one."""
    errors = []
    if result.reason == rules.INVALID and (m := _FIELD_DETAIL.match(result.detail)):
        errors = [FieldError(field=m.group(1), message=m.group(2))]
    return ProblemError(REFUSAL_STATUS.get(result.reason or "", 409), result.detail, errors=errors,
                        reason=result.reason, rule=result.rule)
