"""Escalation's HTTP API for the programme's checks and figures: follow-up visits, the survey, the figures.

* ``POST /followups/draws`` draws a month (抽查回访), ``GET /followups/draws[/{month}]``
  shows draws, ``GET /followups?month=&contradicted=`` lists the drawn appeals with their
  latest call; ``contradicted=true`` is the lead unit's list of follow-ups that contradict
  the enterprise's own rating.
* ``POST /survey/imports?month=`` imports a third-party survey CSV (第三方测评), all or
  nothing: a bad file answers 422 with one error per bad field (``line <n>: <field>``).
* ``GET /figures?from=&to=`` the programme's headline figures (JSON, or ``format=table``).

The two POSTs take the lead unit's bearer token (区行政审批局); reading is open, as ``/report`` is.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Body, Path, Query, Request, Response, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from services.escalation import figures, followups, survey
from services.escalation.config import Context
from services.escalation.domain.figures import ProgrammeFigures, render_table
from services.escalation.months import MONTH
from shared import clock
from shared.contracts import FieldError
from shared.district import Unit, UnitKind
from shared.http import ProblemError, bearer, bearer_token, problems
from shared.service import Service

MAX_SURVEY_FILE = 8 * 1024 * 1024
"""Bytes a survey file may have (20,000 rows of a few hundred bytes)."""

MONTH_PATTERN = MONTH.pattern


class DrawRequest(BaseModel):
    month: str = Field(pattern=MONTH_PATTERN, description="YYYY-MM whose closed appeals are drawn.")
    share: float | None = Field(None, ge=0, le=1, description="Default: follow_ups.share of escalation.yaml.")
    seed: int | None = Field(None, ge=0, le=followups.MAX_SEED, description="Default: a random seed, recorded.")


def lead_unit_of(ctx: Context):
    """The dependency admitting only the lead unit's bearer token."""

    def lead_unit(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Unit:
        token = bearer_token(credentials)
        unit = next((u for u in ctx.district.units if u.token_matches(token)), None)
        if unit is None:
            raise ProblemError(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        if unit.kind != UnitKind.lead:
            raise ProblemError(403, "only the lead unit draws follow-ups and imports surveys", reason="not_lead_unit",
                               rule="OnlyLeadUnitMayCheckTheRatings")
        return unit

    return lead_unit


def register(service: Service, ctx: Context) -> None:
    """Follow-ups (ct.in.feedback, the monthly draw), the figures' subscriptions and gauges, and their routes."""
    followups.register(service, ctx)
    figures.register(service, ctx)
    lead_unit = lead_unit_of(ctx)
    router = APIRouter(tags=["follow-ups, survey, figures"])

    @router.post("/followups/draws", response_model=followups.FollowUpDraw, responses=problems(401, 403, 409, 422),
                 summary="Draw a month's appeals for follow-up calls (抽查回访); the same month again gives its draw")
    async def draw(request: DrawRequest = Body(...), unit: Unit = Security(lead_unit)) -> followups.FollowUpDraw:
        try:
            async with service.unit_of_work() as uow:
                return await followups.draw_month(uow, ctx, request.month, clock.now(), share=request.share,
                                                  seed=request.seed, by=f"http:{unit.unit_code}")
        except followups.DrawConflict as exc:
            raise ProblemError(409, str(exc), reason="already_drawn", rule="ADrawIsNeverReplaced") from None

    @router.get("/followups/draws", summary="Every month's draw: seed, share, how many appeals")
    async def list_draws() -> list[dict]:
        async with service.pool.acquire() as conn:
            return [{k: r[k] for k in ("month", "draw_id", "seed", "share", "candidates", "drawn_at", "drawn_by",
                                       "drawn")} for r in await followups.draws(conn)]

    @router.get("/followups/draws/{month}", response_model=followups.FollowUpDraw, responses=problems(404, 422),
                summary="One month's draw and its appeals")
    async def show_draw(month: str = Path(pattern=MONTH_PATTERN)) -> followups.FollowUpDraw:
        async with service.pool.acquire() as conn:
            made = await followups.stored_draw(conn, month)
        if made is None:
            raise ProblemError(404, f"{month} has not been drawn")
        return made

    @router.get("/followups", response_model=list[followups.FollowUpItem], responses=problems(422),
                summary="Drawn appeals and their latest follow-up call; contradicted=true: the lead unit's list")
    async def list_follow_ups(
        month: str | None = Query(None, pattern=MONTH_PATTERN, description="YYYY-MM; default: every month."),
        contradicted: bool | None = Query(None, description="true: only follow-ups contradicting the own rating."),
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> list[followups.FollowUpItem]:
        async with service.pool.acquire() as conn:
            return await followups.listing(conn, month, contradicted, limit)

    @router.post("/survey/imports", response_model=survey.SurveyImport, responses=problems(401, 403, 422),
                 openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {
                     "type": "string", "description": "appeal_id,rating,comment,surveyor (UTF-8)"}}}}},
                 summary="Import a third-party survey CSV (第三方测评) for a month: all rows or none")
    async def import_survey(
        request: Request,
        month: str = Query(pattern=MONTH_PATTERN, description="YYYY-MM the survey evaluates."),
        filename: str | None = Query(None, max_length=200, description="The file's name, kept with the import."),
        unit: Unit = Security(lead_unit),
    ) -> survey.SurveyImport:
        data = await request.body()
        if len(data) > MAX_SURVEY_FILE:
            raise ProblemError(422, f"a survey file has at most {MAX_SURVEY_FILE} bytes",
                               errors=[FieldError(field="file", message=f"{len(data)} bytes")])
        try:
            async with service.pool.acquire() as conn, conn.transaction():
                return await survey.import_survey(conn, month, data, clock.now(), filename=filename,
                                                  by=f"http:{unit.unit_code}")
        except survey.SurveyInvalid as exc:
            raise ProblemError(422, f"{len(exc.errors)} bad field(s); nothing was imported", errors=[
                FieldError(field=f"line {e.line}: {e.field}", message=e.message) for e in exc.errors]) from None

    @router.get("/survey/imports", response_model=list[survey.SurveyImport], responses=problems(422),
                summary="The survey files imported (of a month)")
    async def list_imports(month: str | None = Query(None, pattern=MONTH_PATTERN)) -> list[survey.SurveyImport]:
        async with service.pool.acquire() as conn:
            return await survey.imports(conn, month)

    @router.get("/figures", response_model=ProgrammeFigures, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "JSON, or a text table."},
        **problems(422)}, summary="The programme's headline figures over a period (events, attendances, 办结率, 满意率)")
    async def programme_figures(
        period_from: date = Query(alias="from", description="First day (YYYY-MM-DD, Asia/Shanghai)."),
        period_to: date = Query(alias="to", description="Last day, included."),
        format: str = Query("json", pattern="^(json|table)$"),  # noqa: A002 - the public parameter name
    ) -> ProgrammeFigures | Response:
        if period_to < period_from:
            raise ProblemError(422, "to is before from", errors=[FieldError(field="to", message="before from")])
        async with service.pool.acquire() as conn:
            result = await figures.figures(conn, ctx, period_from, period_to)
        return PlainTextResponse(render_table(result)) if format == "table" else result

    service.http.include_router(router)
