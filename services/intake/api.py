"""Intake's HTTP API: the public status of an appeal (the same answer as ``ct.q.appeal``), and the hot topics.

Both status routes call the :func:`~services.intake.use_cases.appeal_status` use case;
an appeal that does not exist is a 404 problem, a bad parameter a 422 problem.
The timeline inside a status is part of the contract reply: it is not paged.

``GET /topics`` is the month's hot-topics analysis (热点研判, :mod:`services.intake.topics`)
as JSON (:class:`~services.intake.topics.TopicsReport`), CSV or a text table; the
analysis runs in a worker thread, so the service keeps consuming meanwhile.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError

from services.intake import topics, use_cases
from services.intake.store import TopicAppeals
from shared import clock
from shared.contracts import AppealQuery, AppealStatus, field_errors
from shared.district import load_district
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
    register_topics(service)


def register_topics(service: Service) -> None:
    """Add ``GET /topics`` (热点研判) to ``service.http``."""
    router = APIRouter(tags=["topics"])
    district = load_district(service.settings.district_config)

    def category_of(hint: str) -> str | None:
        category = district.category(hint)
        return category.name if category else None

    @router.get(
        "/topics",
        summary="The month's hot topics (热点研判, 每月一题)",
        description="Categories and text themes of the month's appeals with their growth against the previous "
                    "months, appeals repeated three times or more, and the proposed theme of the next coffee event "
                    "with the appeals behind it (the score formula comes with it). `format`: json (default), csv "
                    "(UTF-8 with a BOM, one header row, as Excel opens it) or table.",
        response_model=topics.TopicsReport,
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                     "text/plain": {"schema": {"type": "string"}}},
                         "description": "The analysis: JSON (TopicsReport), CSV or a text table."},
                   **problems(422)},
    )
    async def hot_topics(
        month: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
                                  description="YYYY-MM; default: this month (Asia/Shanghai)."),
        format: topics.Format = Query("json", description="json, csv or table."),  # noqa: A002 - the public name
        months_back: int = Query(3, ge=1, le=24, description="Previous months to compare with."),
    ) -> topics.TopicsReport | Response:
        month = month or topics.month_of(clock.now())
        settings = topics.TopicSettings(months_back=months_back)
        async with service.pool.acquire() as conn:
            appeals = await TopicAppeals(conn, category_of).in_window(*topics.window(month, months_back))
        report = await asyncio.to_thread(topics.analyse, appeals, month, settings)
        if format == "json":
            return report
        body = await asyncio.to_thread(topics.render, report, format)
        if format == "csv":
            return Response(body.encode("utf-8"), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="topics-{month}.csv"'})
        return PlainTextResponse(body)

    service.http.include_router(router)
