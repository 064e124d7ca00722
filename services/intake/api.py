"""Intake's HTTP API: the public status of an appeal (the same answer as `ct.q.appeal`)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from services.intake.handlers import appeal_status
from shared.contracts import AppealStatus
from shared.service import Service


def register(service: Service) -> None:
    router = APIRouter(tags=["appeals"])

    @router.get("/appeals/{appeal_id}", response_model=AppealStatus, summary="An appeal's status and timeline")
    async def get_appeal(appeal_id: str) -> AppealStatus:
        async with service.pool.acquire() as conn:
            status = await appeal_status(conn, appeal_id)
        if not status.found:
            raise HTTPException(404, detail=f"no appeal {appeal_id}")
        return status

    @router.get("/appeals", response_model=AppealStatus, summary="Find an appeal by its channel and source id")
    async def find_appeal(channel: str = Query(..., max_length=32),
                          source_id: str = Query(..., max_length=160)) -> AppealStatus:
        async with service.pool.acquire() as conn:
            status = await appeal_status(conn, None, channel, source_id)
        if not status.found:
            raise HTTPException(404, detail=f"no appeal from {channel}:{source_id}")
        return status

    service.http.include_router(router)
