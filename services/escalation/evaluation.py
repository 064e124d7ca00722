"""The monthly evaluation and ranking of the units (考评排名), and the business gauges.

The counts come from escalation's own tables (:func:`store.unit_month_counts`),
the rates and the score from :func:`domain.evaluate_unit` and
:func:`domain.rank_units`. The same ranking is printed by ``coffeetime report``,
served at ``GET /report`` and, for the current month, exported as gauges.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
from datetime import datetime
from typing import Any, Literal

import asyncpg

from services.escalation import domain, store
from services.escalation.config import GAUGE_REFRESH_S, Context
from services.escalation.metrics import (
    OPEN_ORDERS,
    OVERDUE_ORDERS,
    UNIT_CLOSURE_RATE,
    UNIT_ON_TIME_RATE,
    UNIT_SATISFACTION_RATE,
)
from shared import clock, outbox
from shared.contracts import MonthlyList, MonthlyListItem, subjects
from shared.contracts.common import SHANGHAI
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.evaluation")

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

COLUMNS = (
    "rank", "unit_code", "unit", "score", "received", "signed_on_time", "due", "closed", "closed_on_time",
    "rated", "satisfied_or_basically", "returned", "reopened", "overdue", "noticed", "closure_rate",
    "satisfaction_rate", "on_time_rate", "sign_on_time_rate", "return_rate", "reopen_rate", "note",
)


def current_month(now: datetime | None = None) -> str:
    """This month in Asia/Shanghai, ``YYYY-MM``."""
    return (now or clock.now()).astimezone(SHANGHAI).strftime("%Y-%m")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[first moment, first moment of the next month) of ``YYYY-MM`` in Asia/Shanghai."""
    if not MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, mon = int(month[:4]), int(month[5:])
    start = datetime(year, mon, 1, tzinfo=SHANGHAI)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


async def month_evaluations(conn: asyncpg.Connection, month: str, ctx: Context,
                            now: datetime | None = None) -> list[domain.UnitEvaluation]:
    """Each unit's rates for ``month`` (units with anything to count in it)."""
    start, end = month_bounds(month)
    counts = await store.unit_month_counts(conn, start, end, now or clock.now())
    return [domain.evaluate_unit(domain.UnitMonthStats(month=month, **row), ctx.weights) for row in counts]


async def month_ranking(conn: asyncpg.Connection, month: str, ctx: Context,
                        now: datetime | None = None, min_orders: int | None = None) -> domain.Ranking:
    """The month's ranking with the configured weights and ``min_orders`` (or the one given)."""
    evaluations = await month_evaluations(conn, month, ctx, now)
    return domain.rank_units(evaluations, ctx.weights, ctx.min_orders if min_orders is None else min_orders)


def ranking_document(ranking: domain.Ranking, month: str, ctx: Context) -> dict[str, Any]:
    """The ranking as a JSON-ready document: month, formula, weights, one entry per unit."""
    return {
        "month": month,
        "district": ctx.district.name,
        "formula": ranking.formula,
        "weights": ranking.weights.model_dump(),
        "min_orders": ranking.min_orders,
        "units": [_row(r, ctx) for r in ranking.rows],
    }


def _row(row: domain.RankedUnit, ctx: Context) -> dict[str, Any]:
    e = row.evaluation.model_dump()
    e.update(rank=row.rank, score=row.score, note=row.note, unit=ctx.unit_name(row.evaluation.unit_code))
    return {c: e[c] for c in COLUMNS}


def render(ranking: domain.Ranking, month: str, ctx: Context, fmt: Format) -> str:
    """The ranking as a text table, JSON or CSV; each carries the formula and the weights."""
    if fmt == "json":
        return json.dumps(ranking_document(ranking, month, ctx), ensure_ascii=False, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        out.write(f"# unit evaluation {month}, {ctx.district.name}\n# {ranking.formula}\n"
                  f"# units with fewer than {ranking.min_orders} orders received are listed but not ranked\n")
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in ranking.rows:
            writer.writerow(_row(row, ctx))
        return out.getvalue()
    if fmt == "table":
        return f"unit evaluation {month}, {ctx.district.name}\n{ranking.render()}\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


# --- gauges ---------------------------------------------------------------------------


async def refresh_gauges(pool: asyncpg.Pool, ctx: Context) -> None:
    """Set the unit gauges: this month's rates, and the open and overdue orders now."""
    now = clock.now()
    async with pool.acquire() as conn:
        evaluations = await month_evaluations(conn, current_month(now), ctx, now)
        open_work = await store.open_work_by_unit(conn, now)
    for gauge in (UNIT_CLOSURE_RATE, UNIT_SATISFACTION_RATE, UNIT_ON_TIME_RATE, OPEN_ORDERS, OVERDUE_ORDERS):
        gauge.clear()  # a unit with nothing to count this month drops out
    for e in evaluations:
        for gauge, value in ((UNIT_CLOSURE_RATE, e.closure_rate), (UNIT_SATISFACTION_RATE, e.satisfaction_rate),
                             (UNIT_ON_TIME_RATE, e.on_time_rate)):
            if value is not None:
                gauge.labels(e.unit_code).set(value)
    for row in open_work:
        OPEN_ORDERS.labels(row["unit_code"]).set(row["open"])
        OVERDUE_ORDERS.labels(row["unit_code"]).set(row["overdue"])


def gauge_refresher(ctx: Context, period: float = GAUGE_REFRESH_S):
    """The background task refreshing the gauges every ``period`` seconds."""

    async def refresh_unit_gauges(service: Service) -> None:
        while True:
            try:
                await refresh_gauges(service.pool, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a gauge is not worth a crash
                log.warning("unit gauges not refreshed", extra={"error": repr(exc)})
            await asyncio.sleep(period)

    return refresh_unit_gauges


# --- the monthly list for the supervision office ---------------------------------------------


def previous_month(now: datetime | None = None) -> str:
    """The month before the current one in Asia/Shanghai, ``YYYY-MM``."""
    first = (now or clock.now()).astimezone(SHANGHAI).replace(day=1)
    year, month = (first.year, first.month - 1) if first.month > 1 else (first.year - 1, 12)
    return f"{year:04d}-{month:02d}"


async def publish_monthly_list(service: Service, month: str) -> bool:
    """Stage ``month``'s list of publicly noticed orders, once; False when done before or empty."""
    start, end = month_bounds(month)
    async with service.pool.acquire() as conn, conn.transaction():
        if await store.seen_before(conn, "escalation-monthly-list", month):
            return False
        rows = await store.noticed_in(conn, start, end)
        if not rows or not await store.first_time(conn, "escalation-monthly-list", [month]):
            return False
        event = MonthlyList(
            event_id=domain.stable_event_id("monthly_list", month), occurred_at=clock.now(), month=month,
            items=[MonthlyListItem(appeal_id=r["appeal_id"], order_id=r["order_id"], unit_code=r["unit_code"],
                                   unit=r["unit"] or r["unit_code"], summary=r["summary"] or "", due_at=r["due_at"],
                                   level=r["level"], noticed_at=r["fired_at"]) for r in rows],
        )
        await outbox.put(conn, "escalation", subjects.DEADLINE_MONTHLY_LIST, event)
    service.wake_outbox()
    log.info("monthly list published", extra={"month": month, "items": len(rows)})
    return True


def monthly_list_publisher(period: float = 300.0):
    """The background task publishing last month's list early in each month (idempotent across replicas)."""

    async def publish_monthly_lists(service: Service) -> None:
        while True:
            try:
                await publish_monthly_list(service, previous_month())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again next period
                log.warning("monthly list not published", extra={"error": repr(exc)})
            await asyncio.sleep(period)

    return publish_monthly_lists
