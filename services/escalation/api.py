"""Escalation's HTTP API: the monthly evaluation and ranking of the units."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from services.escalation import evaluation
from services.escalation.config import Context
from shared.service import Service


def register(service: Service, ctx: Context) -> None:
    router = APIRouter(tags=["evaluation"])

    @router.get(
        "/report",
        summary="The month's evaluation and ranking of the units (考评排名)",
        description="Counts, rates and the weighted score per unit; the formula and weights come with it. "
                    "`format`: json (default), csv or table.",
        responses={200: {"content": {"application/json": {}, "text/csv": {}, "text/plain": {}}}},
    )
    async def report(
        month: str | None = Query(None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM; default: this month (Asia/Shanghai)."),
        format: evaluation.Format = Query("json", description="json, csv or table."),  # noqa: A002 - the public parameter name
        min_orders: int | None = Query(None, ge=0, description="Rank only units with at least this many orders (default: configured)."),
    ) -> Response:
        month = month or evaluation.current_month()
        async with service.pool.acquire() as conn:
            ranking = await evaluation.month_ranking(conn, month, ctx, min_orders=min_orders)
        if format == "json":
            return JSONResponse(evaluation.ranking_document(ranking, month, ctx))
        body = evaluation.render(ranking, month, ctx, format)
        if format == "csv":
            return Response(body, media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="units-{month}.csv"'})
        return PlainTextResponse(body)

    service.http.include_router(router)
