"""Escalation's HTTP API: the monthly evaluation and ranking of the units (``GET /report``).

JSON answers with :class:`~services.escalation.evaluation.RankingReport`; the
CSV and table formats are the same figures as text (their media types are
declared on the route). A bad month or format is a 422 problem (problem+json,
one error per field).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import PlainTextResponse

from services.escalation import evaluation
from services.escalation.config import Context
from services.escalation.unit_of_work import EvaluationRepository
from shared.http import problems
from shared.service import Service


def register(service: Service, ctx: Context) -> None:
    """Add the report route to the service's HTTP app."""
    router = APIRouter(tags=["evaluation"])

    @router.get(
        "/report",
        summary="The month's evaluation and ranking of the units (考评排名)",
        description="Counts, rates and the weighted score per unit; the formula and weights come with it. "
                    "`format`: json (default), csv or table. Every unit with anything to count in the month "
                    "is in the one document (a ranking is not paged).",
        response_model=evaluation.RankingReport,
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                     "text/plain": {"schema": {"type": "string"}}},
                         "description": "The ranking: JSON (RankingReport), CSV or a text table."},
                   **problems(422)},
    )
    async def report(
        month: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default: this month (Asia/Shanghai)."),
        format: evaluation.Format = Query("json", description="json, csv or table."),  # noqa: A002 - the public parameter name
        min_orders: int | None = Query(None, ge=0, description="Rank only units with at least this many orders (default: configured)."),
    ) -> evaluation.RankingReport | Response:
        month = month or evaluation.current_month()
        async with service.pool.acquire() as conn:
            ranking = await evaluation.month_ranking(EvaluationRepository(conn), month, ctx, min_orders=min_orders)
        if format == "json":
            return evaluation.ranking_document(ranking, month, ctx)
        body = evaluation.render(ranking, month, ctx, format)
        if format == "csv":
            return Response(body, media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="units-{month}.csv"'})
        return PlainTextResponse(body)

    service.http.include_router(router)
