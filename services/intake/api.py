"""Intake's HTTP API: the public status of an appeal (the same answer as ``ct.q.appeal``), and the hot topics.

Both status routes call the :func:`~services.intake.use_cases.appeal_status` use case;
an appeal that does not exist is a 404 problem, a bad parameter a 422 problem. They and
``GET /topics`` carry enterprise names and contents: each needs a read API key
(``X-API-Key``, ``READ_API_KEYS``), else a 401 problem.
The timeline inside a status is part of the contract reply: it is not paged.

``POST /appeals/{appeal_id}/split`` undoes a duplicate's merge (拆单, the lead
unit's token; :func:`~services.intake.use_cases.split_appeal`): 404 when there
is no such appeal, 409 when it is no duplicate or is closed; a second split
answers the first one's result.

``GET /topics`` is the month's hot-topics analysis (热点研判, :mod:`services.intake.topics`)
as JSON (:class:`~services.intake.topics.TopicsReport`), CSV or a text table; the
analysis runs in a worker thread, so the service keeps consuming meanwhile.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field, ValidationError

from services.intake import open311, topics, use_cases
from services.intake.store import TopicAppeals
from shared import clock
from shared.access import ReadKeys
from shared.contracts import AppealQuery, AppealStatus, field_errors
from shared.district import Unit, UnitKind, load_district, unit_of_token
from shared.http import READ_KEY_REFUSED, ProblemError, bearer, bearer_token, problems, read_key_required
from shared.months import MONTH
from shared.service import Service


def register(service: Service) -> None:
    """Add the status routes to ``service.http``."""
    router = APIRouter(tags=["appeals"])
    keys = ReadKeys.of(service.settings)

    async def status_of(detail: str, **query: str) -> AppealStatus:
        try:
            q = AppealQuery(**query)
        except ValidationError as exc:
            raise ProblemError(422, "the query does not validate", errors=field_errors(exc)) from exc
        status = await use_cases.appeal_status(service.unit_of_work(), q)
        if not status.found:
            raise ProblemError(404, detail)
        return status

    @router.get("/appeals/{appeal_id}", response_model=AppealStatus,
                responses=problems(401, 404, 422, d401=READ_KEY_REFUSED), summary="An appeal's status and timeline",
                dependencies=[read_key_required(service.name, keys, "/appeals/{appeal_id}")])
    async def get_appeal(appeal_id: str = Path(..., min_length=1, max_length=40)) -> AppealStatus:
        """The status and timeline of the appeal ``appeal_id`` (as in the receipt)."""
        return await status_of(f"no appeal {appeal_id}", appeal_id=appeal_id)

    @router.get("/appeals", response_model=AppealStatus, responses=problems(401, 404, 422, d401=READ_KEY_REFUSED),
                summary="Find an appeal by its channel and source id",
                dependencies=[read_key_required(service.name, keys, "/appeals")])
    async def find_appeal(channel: str = Query(..., min_length=1, max_length=32),
                          source_id: str = Query(..., min_length=1, max_length=160)) -> AppealStatus:
        """The status and timeline of the appeal that the sender ``channel`` knows as ``source_id``."""
        return await status_of(f"no appeal from {channel}:{source_id}", channel=channel, source_id=source_id)

    service.http.include_router(router)
    register_split(service)
    register_topics(service)
    open311.register(service)  # GeoReport v2 at /open311/v2 (services/intake/open311.py)


class SplitRequest(BaseModel):
    """The body of ``POST /appeals/{appeal_id}/split`` (optional)."""

    reason: str | None = Field(None, max_length=500, description="Why the duplicate is handled on its own.")


class SplitView(BaseModel):
    """A duplicate after its split (拆单)."""

    appeal_id: str = Field(description="The appeal split off.")
    master_appeal_id: str = Field(description="The appeal it followed.")
    split_at: datetime = Field(description="When it was split.")
    split_by: str | None = Field(None, description="Who split it (the lead unit's code).")
    already_split: bool = Field(False, description="True: it was split before; nothing changed now.")


def register_split(service: Service) -> None:
    """Add ``POST /appeals/{appeal_id}/split`` (the lead unit undoes a duplicate's merge) to ``service.http``."""
    router = APIRouter(tags=["appeals"])
    district = load_district(service.settings.district_config, service.settings.unit_tokens)

    def lead_unit(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Unit:
        token = bearer_token(credentials)
        unit = unit_of_token(district.units, token)
        if unit is None:
            raise ProblemError(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if unit.kind != UnitKind.lead:
            raise ProblemError(403, "only the lead unit splits a duplicate", reason="not_lead_unit")
        return unit

    @router.post(
        "/appeals/{appeal_id}/split", response_model=SplitView, responses=problems(401, 403, 404, 409, 422),
        summary="Split a duplicate from its master (拆单): it is then handled on its own",
        description="Undoes a merge: publishes `ct.appeal.split`, after which dispatch routes the appeal like a "
                    "new one. Idempotent: a second split answers the first one's result (`already_split`). "
                    "404: no such appeal; 409: the appeal is not a duplicate, or it is closed. The lead unit's token.")
    async def split(appeal_id: str = Path(..., min_length=1, max_length=40), body: SplitRequest | None = None,
                    unit: Unit = Depends(lead_unit)) -> SplitView:
        done = await use_cases.split_appeal(service.unit_of_work(), appeal_id, unit.unit_code,
                                            body.reason if body else None)
        if done.outcome == "not_found":
            raise ProblemError(404, f"no appeal {appeal_id}")
        if done.outcome == "not_a_duplicate":
            raise ProblemError(409, f"{appeal_id} follows no master: there is nothing to split",
                               reason="not_a_duplicate")
        if done.outcome == "closed":
            raise ProblemError(409, f"{appeal_id} is closed: it is not split any more", reason="appeal_closed")
        assert done.master_appeal_id is not None and done.split_at is not None
        return SplitView(appeal_id=appeal_id, master_appeal_id=done.master_appeal_id, split_at=done.split_at,
                         split_by=done.split_by, already_split=done.outcome == "already_split")

    service.http.include_router(router)


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
                   **problems(401, 422, d401=READ_KEY_REFUSED)},
        dependencies=[read_key_required(service.name, ReadKeys.of(service.settings), "/topics")],
    )
    async def hot_topics(
        month: str | None = Query(None, pattern=MONTH.pattern,
                                  description="YYYY-MM, years 2000-2999; default: this month (Asia/Shanghai)."),
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
