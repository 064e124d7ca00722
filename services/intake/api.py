"""Intake's HTTP API: the public status of an appeal (the same answer as ``ct.q.appeal``).

Both routes call the :func:`~services.intake.use_cases.appeal_status` use case;
an appeal that does not exist is a 404 problem, a bad parameter a 422 problem.
The timeline inside a status is part of the contract reply: it is not paged.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query
from pydantic import ValidationError

from services.intake import use_cases
from shared.contracts import AppealQuery, AppealStatus, field_errors
from shared.http import ProblemError, problems
from shared.service import Service


def register(service: Service) -> None:
    """Add the status routes to ``service.http``."""
    router = APIRouter(tags=["appeals"])

    async def status_of(detail: str, **query: str) -> AppealStatus:
        try:
            q = AppealQuery(**query)
        except ValidationError as exc:
            raise ProblemError(422, "the query does not validate", errors=field_errors(exc)) from exc
        status = await use_cases.appeal_status(service.unit_of_work(), q)
        if not status.found:
            raise ProblemError(404, detail)
        return status

    @router.get("/appeals/{appeal_id}", response_model=AppealStatus, responses=problems(404, 422),
                summary="An appeal's status and timeline")
    async def get_appeal(appeal_id: str = Path(..., min_length=1, max_length=40)) -> AppealStatus:
        """The status and timeline of the appeal ``appeal_id`` (as in the receipt)."""
        return await status_of(f"no appeal {appeal_id}", appeal_id=appeal_id)

    @router.get("/appeals", response_model=AppealStatus, responses=problems(404, 422),
                summary="Find an appeal by its channel and source id")
    async def find_appeal(channel: str = Query(..., min_length=1, max_length=32),
                          source_id: str = Query(..., min_length=1, max_length=160)) -> AppealStatus:
        """The status and timeline of the appeal that the sender ``channel`` knows as ``source_id``."""
        return await status_of(f"no appeal from {channel}:{source_id}", channel=channel, source_id=source_id)

    service.http.include_router(router)
