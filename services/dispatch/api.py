"""Dispatch's HTTP API for units: list and work their orders with a bearer token.

The same semantics as ``ct.in.order.<unit_code>.<action>``: every action goes
through :func:`services.dispatch.handlers.act`. A unit sees only its own orders;
the lead unit sees all and also dispatches, re-dispatches and decides.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field

from services.dispatch import store
from services.dispatch.domain import ActionPayload
from services.dispatch.handlers import act, parse_action
from shared import clock
from shared.contracts import SourceId, UnitCode
from shared.district import District, Unit, UnitKind
from shared.service import Service


class ActionRequest(BaseModel):
    """The body of ``POST /orders/{order_id}/{action}``: the fields of ``UnitAction`` but ``order_id``."""

    action_id: SourceId = Field(description="Your id of this action; repeating it does nothing twice.")
    actor: str = Field(min_length=1, max_length=200, description="Who in the unit acts.")
    reason: str | None = Field(None, description="return, extend, escalate, deny_extension.")
    note: str | None = Field(None, description="progress.")
    days: int | None = Field(None, description="extend, grant_extension.")
    reply: str | None = Field(None, description="reply.")
    resolved: bool | None = Field(None, description="reply.")
    unit_code: UnitCode | None = Field(None, description="redispatch, decide_return (lead unit).")
    accept: bool | None = Field(None, description="decide_return (lead unit).")


class DispatchRequest(BaseModel):
    """The body of ``POST /appeals/{appeal_id}/dispatch`` (lead unit, from the manual queue)."""

    action_id: SourceId
    actor: str = Field(min_length=1, max_length=200)
    unit_code: UnitCode
    co_units: list[UnitCode] = Field(default_factory=list)


class ActionResponse(BaseModel):
    accepted: bool
    duplicate: bool = False
    reason: str | None = None
    detail: str = ""
    subjects: list[str] = []
    errors: list[dict] = []


REFUSAL_STATUS = {"unknown_order": 404, "not_your_order": 403, "illegal_transition": 409,
                  "return_limit_reached": 409, "invalid": 422}


def register(service: Service, district: District) -> None:
    router = APIRouter(tags=["work orders"])

    def current_unit(authorization: str = Header(..., description="Bearer <the unit's API token>")) -> Unit:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, detail="bearer token required", headers={"WWW-Authenticate": "Bearer"})
        for unit in district.units:
            if unit.token_matches(token):
                return unit
        raise HTTPException(401, detail="unknown token", headers={"WWW-Authenticate": "Bearer"})

    def is_lead(unit: Unit) -> bool:
        return unit.kind == UnitKind.lead

    @router.get("/orders", summary="The unit's work orders, overdue first (the lead unit sees all)")
    async def list_orders(status: str | None = None, unit: Unit = Depends(current_unit)) -> list[dict[str, Any]]:
        async with service.pool.acquire() as conn:
            rows = await store.list_orders(conn, None if is_lead(unit) else unit.unit_code, status, clock.now())
        return [_order_view(r) for r in rows]

    @router.get("/orders/{order_id}", summary="One work order")
    async def get_order(order_id: str, unit: Unit = Depends(current_unit)) -> dict[str, Any]:
        async with service.pool.acquire() as conn:
            rows = await store.list_orders(conn, None if is_lead(unit) else unit.unit_code, None, clock.now(),
                                           order_id=order_id)
        if rows:
            return _order_view(rows[0])
        # another unit's order answers as if it did not exist
        raise HTTPException(404, detail=f"no order {order_id} for {unit.name}")

    @router.post("/orders/{order_id}/{action}", response_model=ActionResponse,
                 summary="Act on an order: sign, return, progress, extend, reply, escalate; "
                         "lead unit: grant_extension, deny_extension, decide_return, redispatch")
    async def order_action(order_id: str, action: str, body: ActionRequest,
                           unit: Unit = Depends(current_unit)) -> ActionResponse:
        return await _act(unit, action, {**body.model_dump(exclude_none=True), "order_id": order_id})

    @router.post("/appeals/{appeal_id}/dispatch", response_model=ActionResponse,
                 summary="Lead unit: dispatch an appeal from the manual queue by hand")
    async def dispatch_by_hand(appeal_id: str, body: DispatchRequest,
                               unit: Unit = Depends(current_unit)) -> ActionResponse:
        return await _act(unit, "dispatch", {**body.model_dump(), "appeal_id": appeal_id})

    @router.get("/queue", summary="Lead unit: appeals waiting to be dispatched by hand")
    async def manual_queue(unit: Unit = Depends(current_unit)) -> list[dict[str, Any]]:
        if not is_lead(unit):
            raise HTTPException(403, detail="only the lead unit sees the manual queue")
        async with service.pool.acquire() as conn:
            return [dict(r) for r in await store.queued_appeals(conn)]

    async def _act(unit: Unit, action: str, body: dict) -> ActionResponse:
        parsed, errors = parse_action(action, body)
        if parsed is None:
            raise HTTPException(422, detail=[e.model_dump() for e in errors])
        async with service.pool.acquire() as conn, conn.transaction():
            result = await act(service, district, conn, unit_code=unit.unit_code, action=action,
                               action_id=parsed.action_id, payload=ActionPayload.from_unit_action(parsed),
                               order_id=parsed.order_id, appeal_id=parsed.appeal_id)
        service.wake_outbox()
        response = ActionResponse(accepted=result.accepted, duplicate=result.duplicate, reason=result.reason,
                                  detail=result.detail, subjects=list(result.subjects))
        if not result.accepted:
            raise HTTPException(REFUSAL_STATUS.get(result.reason or "", 409), detail=response.model_dump())
        return response

    service.http.include_router(router)


def _order_view(row) -> dict[str, Any]:
    keys = ("order_id", "appeal_id", "unit_code", "role", "status", "reopen_count", "dispatched_at", "signed_at",
            "replied_at", "closed_at", "due_at", "sign_due_at", "pending_extension_days", "extension_days_granted",
            "escalation_level", "summary", "enterprise_name", "category", "received_at", "overdue", "reasons")
    return {k: row[k] for k in keys}
