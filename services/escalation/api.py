"""Escalation's HTTP API: the monthly evaluation (``GET /report``) and the working-day calendar (``/calendar``).

JSON answers with :class:`~services.escalation.evaluation.RankingReport`; the
table, CSV, xlsx, PDF and PNG formats are the same figures as files people
take away (their media types are declared on the route; headers in ``lang``). A bad month or format is a 422 problem (problem+json,
one error per field).

``/calendar``: what the calendar knows of a year (``GET /calendar/years``,
``GET /calendar/years/{year}``), loading a State Council year (``POST
/calendar/years``, the YAML or JSON file as the body) and re-planning the open
deadlines (``POST /calendar/replan``). The two POSTs take the lead unit's bearer
token (区行政审批局), as dispatch's decisions do; a bad file answers 422 with one
error per bad entry and stores nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Query, Request, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials

from services.escalation import domain, evaluation, revised_calendar
from services.escalation.config import Context
from services.escalation.unit_of_work import EvaluationRepository
from shared import clock
from shared.contracts import FieldError
from shared.district import Unit, UnitKind, load_district, unit_of_token
from shared.http import ProblemError, bearer, bearer_token, problems
from shared.months import MONTH
from shared.service import Service

MAX_YEAR_FILE = 64 * 1024
"""Bytes a year file may have (a real one is about 2 KB)."""

_YEAR_BODY = {"required": True, "description": "The year file: YAML or JSON (see YearSchedule).", "content": {
    "application/json": {"schema": domain.YearSchedule.model_json_schema()},
    "application/yaml": {"schema": {"type": "string"}},
}}


def register(service: Service, ctx: Context) -> None:
    """Add the report route to the service's HTTP app."""
    router = APIRouter(tags=["evaluation"])

    @router.get(
        "/report",
        summary="The month's evaluation and ranking of the units (考评排名)",
        description="Counts, rates and the weighted score per unit; the formula and weights come with it. "
                    "`format`: json (default), table, csv (for Excel: UTF-8 with BOM, one header row, CRLF), "
                    "xlsx, or pdf / png (the chart and the key figures). `lang`: the headers of csv, xlsx, "
                    "pdf and png, zh (default) or en. Every unit with anything to count in the month is in "
                    "the one document (a ranking is not paged).",
        response_model=evaluation.RankingReport,
        responses={200: {"content": {media: {"schema": {"type": "string", **(
                             {} if media.startswith("text/") else {"format": "binary"})}}
                                     for fmt, media in evaluation.MEDIA_TYPES.items() if fmt != "json"},
                         "description": "The ranking: JSON (RankingReport), a text table, CSV, xlsx, PDF or PNG."},
                   **problems(422)},
    )
    async def report(
        month: str | None = Query(None, pattern=MONTH.pattern, description="YYYY-MM; default: this month (Asia/Shanghai)."),
        format: evaluation.Format = Query("json", description="json, table, csv, xlsx, pdf or png."),  # noqa: A002 - the public parameter name
        lang: evaluation.Lang = Query("zh", description="Column headers of csv, xlsx, pdf, png: zh or en."),
        min_orders: int | None = Query(None, ge=0, description="Rank only units with at least this many orders (default: configured)."),
    ) -> evaluation.RankingReport | Response:
        month = month or evaluation.current_month()
        async with service.pool.acquire() as conn:
            ranking = await evaluation.month_ranking(EvaluationRepository(conn), month, ctx, min_orders=min_orders)
        if format == "json":
            return evaluation.ranking_document(ranking, month, ctx)
        if format == "table":
            return PlainTextResponse(evaluation.render(ranking, month, ctx, format))
        # xlsx and the chart take a CPU for a moment (matplotlib: ~0.2 s a page): off the event loop
        body = await asyncio.to_thread(evaluation.export, ranking, month, ctx, format, lang)
        filename = evaluation.export_filename(month, format)
        disposition = "inline" if format in ("pdf", "png") else "attachment"
        return Response(body, media_type=evaluation.MEDIA_TYPES[format],
                        headers={"Content-Disposition": f'{disposition}; filename="{filename}"'})

    service.http.include_router(router)
    register_calendar(service, ctx)


def register_calendar(service: Service, ctx: Context) -> None:
    """Add the calendar routes: read by anyone who reaches the service, changed by the lead unit only."""
    router = APIRouter(prefix="/calendar", tags=["calendar"])
    # the tokens as every service checks them: the district file's hashes, or UNIT_TOKENS in their place
    district = load_district(service.settings.district_config, service.settings.unit_tokens)

    def lead_unit(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Unit:
        unit = unit_of_token(district.units, bearer_token(credentials))
        if unit is None:
            raise ProblemError(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if unit.kind != UnitKind.lead:
            raise ProblemError(403, "only the lead unit changes the working-day calendar",
                               reason="not_lead_unit", rule="OnlyLeadUnitMayChangeTheCalendar")
        return unit

    @router.get("/years", summary="The years the working-day calendar knows: loaded State Council years and the package's")
    async def list_years() -> dict[str, Any]:
        await revised_calendar.refresh(service.unit_of_work, ctx)
        return revised_calendar.years_view(ctx.calendar)

    @router.get("/years/{year}", summary="One year: where its holidays come from, its days off and make-up days",
                responses=problems(422))
    async def show_year(year: int = Path(ge=2000, le=2100)) -> dict[str, Any]:
        await revised_calendar.refresh(service.unit_of_work, ctx)
        async with service.unit_of_work() as uow:
            row = await uow.calendar.year(year)
        return revised_calendar.year_view(ctx.calendar, year, row)

    @router.post("/years", summary="Load a year's State Council schedule (YAML or JSON), then re-plan the open deadlines",
                 openapi_extra={"requestBody": _YEAR_BODY}, responses=problems(401, 403, 422))
    async def load_year(
        request: Request,
        dry_run: bool = Query(False, description="Check it and list the deadlines it would move; store nothing."),
        over_package: bool = Query(False, description="Load a year chinese-calendar knows too (the file wins)."),
        unit: Unit = Security(lead_unit),
    ) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_YEAR_FILE:
            raise ProblemError(422, f"a year file has at most {MAX_YEAR_FILE} bytes",
                               errors=[FieldError(field="file", message=f"{len(body)} bytes")])
        try:
            year = domain.parse_year(body)
            report = await revised_calendar.load_year(service.unit_of_work, ctx, year, f"http:{unit.unit_code}",
                                                      clock.now(), dry_run=dry_run, over_package=over_package)
        except domain.ScheduleInvalid as exc:
            raise ProblemError(422, "the year file is not valid or not loadable; nothing was stored", errors=[
                FieldError(field=p.field, message=f"{p.message} ({p.rule})") for p in exc.problems]) from None
        return report.to_dict()

    @router.post("/replan", summary="Re-plan every open deadline on the current calendar: the diff, and the moves made",
                 responses=problems(401, 403))
    async def replan(dry_run: bool = Query(False, description="List what would move; change nothing."),
                     unit: Unit = Security(lead_unit)) -> dict[str, Any]:  # noqa: ARG001 - the lead unit only
        report = await revised_calendar.replan(service.unit_of_work, ctx, clock.now(), dry_run=dry_run)
        return report.to_dict()

    service.http.include_router(router)
