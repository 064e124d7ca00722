"""The monthly evaluation and ranking of the units (考评排名), and the business gauges.

The counts come from escalation's own tables (:func:`store.unit_month_counts`),
the rates and the score from :func:`domain.evaluate_unit` and
:func:`domain.rank_units`. The same ranking is printed by ``coffeetime report``,
served at ``GET /report`` and, for the current month, exported as gauges.
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime
from typing import Literal, Protocol

import asyncpg
from pydantic import BaseModel, Field

from services.escalation import domain, use_cases
from services.escalation.config import GAUGE_REFRESH_S, Context
from services.escalation.metrics import (
    OPEN_ORDERS,
    OVERDUE_ORDERS,
    UNIT_CLOSURE_RATE,
    UNIT_ON_TIME_RATE,
    UNIT_SATISFACTION_RATE,
)
from services.escalation.months import MONTH, current_month, month_bounds, previous_month
from services.escalation.periodic import every
from services.escalation.unit_of_work import EvaluationRepository
from shared import clock
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.evaluation")

__all__ = [
    "COLUMNS", "FORMATS", "MONTH", "Format", "RankingReport", "UnitRow", "current_month", "gauge_refresher",
    "month_bounds", "month_evaluations", "month_ranking", "monthly_list_publisher", "previous_month",
    "publish_monthly_list", "ranking_document", "refresh_gauges", "render",
]

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")


class UnitRow(BaseModel):
    """One unit of the ranking: its rank (null when listed, not ranked), score, counts and rates."""

    rank: int | None = Field(description="1 is best; equal scores share a rank; null: listed, not ranked (see note).")
    unit_code: str
    unit: str = Field(description="The unit's name.")
    score: float | None = Field(description="The weighted score (see the formula); null when no rate is defined.")
    received: int = Field(description="Orders dispatched to the unit in the month.")
    signed_on_time: int
    due: int = Field(description="Orders whose handling deadline fell in the month.")
    closed: int
    closed_on_time: int
    rated: int
    satisfied_or_basically: int
    returned: int
    reopened: int
    overdue: int
    noticed: int = Field(description="Public notices (通报) by the supervision office.")
    closure_rate: float | None = Field(description="办结率: closed / due; null when nothing was due.")
    satisfaction_rate: float | None = Field(description="满意率: (satisfied + basically satisfied) / rated.")
    on_time_rate: float | None
    sign_on_time_rate: float | None
    return_rate: float | None
    reopen_rate: float | None
    note: str = Field(description="Why a unit is not ranked.")
    follow_up_rated: int = Field(0, description="Follow-up calls (抽查回访) of the month's draw with a rating, "
                                                "of appeals the unit held (each appeal once: its latest call).")
    follow_up_satisfied: int = Field(0, description="Of those, satisfied or basically satisfied.")
    follow_up_contradicted: int = Field(0, description="Of those, contradicting the enterprise's own rating.")
    follow_up_satisfaction_rate: float | None = Field(None, description="follow_up_satisfied / follow_up_rated.")
    survey_rated: int = Field(0, description="Third-party survey (第三方测评) ratings imported for the month.")
    survey_satisfied: int = Field(0, description="Of those, satisfied or basically satisfied.")
    survey_satisfaction_rate: float | None = Field(None, description="survey_satisfied / survey_rated.")


class RankingReport(BaseModel):
    """The month's evaluation and ranking of the units (考评排名), with the formula and weights that made it."""

    month: str = Field(description="YYYY-MM (Asia/Shanghai).")
    district: str
    formula: str = Field(description="The score formula, in words, with these weights.")
    weights: domain.EvaluationWeights
    min_orders: int = Field(description="Units with fewer orders received are listed but not ranked.")
    units: list[UnitRow] = Field(description="Ranked units by rank, then the unranked ones by unit code.")


#: The columns of the CSV export, in the order of :class:`UnitRow` (follow-up and survey columns last, so
#: a reader of the earlier columns by position is not moved).
COLUMNS: tuple[str, ...] = tuple(UnitRow.model_fields)


class MonthCounts(Protocol):
    """Where the month's counts come from (:class:`EvaluationRepository`, or a fake)."""

    async def unit_month_counts(self, start: datetime, end: datetime, now: datetime) -> list[dict]: ...
    async def unit_month_checks(self, month: str) -> dict[str, dict[str, int]]: ...


async def month_evaluations(counts: MonthCounts, month: str, ctx: Context,
                            now: datetime | None = None) -> list[domain.UnitEvaluation]:
    """Each unit's rates for ``month`` (units with anything to count in it), the follow-ups' and survey's too."""
    start, end = month_bounds(month)
    rows = {row["unit_code"]: dict(row) for row in await counts.unit_month_counts(start, end, now or clock.now())}
    for unit_code, checked in (await counts.unit_month_checks(month)).items():
        rows.setdefault(unit_code, {"unit_code": unit_code}).update(checked)
    return [domain.evaluate_unit(domain.UnitMonthStats(month=month, **row), ctx.weights)
            for _, row in sorted(rows.items())]


async def month_ranking(counts: MonthCounts, month: str, ctx: Context,
                        now: datetime | None = None, min_orders: int | None = None) -> domain.Ranking:
    """The month's ranking with the configured weights and ``min_orders`` (or the one given)."""
    evaluations = await month_evaluations(counts, month, ctx, now)
    return domain.rank_units(evaluations, ctx.weights, ctx.min_orders if min_orders is None else min_orders)


def ranking_document(ranking: domain.Ranking, month: str, ctx: Context) -> RankingReport:
    """The ranking as its document: month, formula, weights, one row per unit."""
    return RankingReport(month=month, district=ctx.district.name, formula=ranking.formula, weights=ranking.weights,
                         min_orders=ranking.min_orders, units=[_row(r, ctx) for r in ranking.rows])


def _row(row: domain.RankedUnit, ctx: Context) -> UnitRow:
    e = row.evaluation.model_dump()
    e.update(rank=row.rank, score=row.score, note=row.note, unit=ctx.unit_name(row.evaluation.unit_code))
    return UnitRow.model_validate({c: e[c] for c in COLUMNS})


def render(ranking: domain.Ranking, month: str, ctx: Context, fmt: Format) -> str:
    """The ranking as a text table, JSON or CSV; each carries the formula and the weights."""
    if fmt == "json":
        return ranking_document(ranking, month, ctx).model_dump_json(indent=2)
    if fmt == "csv":
        out = io.StringIO()
        out.write(f"# unit evaluation {month}, {ctx.district.name}\n# {ranking.formula}\n"
                  f"# units with fewer than {ranking.min_orders} orders received are listed but not ranked\n")
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in ranking.rows:
            writer.writerow(_row(row, ctx).model_dump())
        return out.getvalue()
    if fmt == "table":
        return f"unit evaluation {month}, {ctx.district.name}\n{ranking.render()}\n"
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")


# --- gauges ---------------------------------------------------------------------------


async def refresh_gauges(pool: asyncpg.Pool, ctx: Context) -> None:
    """Set the unit gauges: this month's rates, and the open and overdue orders now."""
    now = clock.now()
    async with pool.acquire() as conn:
        counts = EvaluationRepository(conn)
        evaluations = await month_evaluations(counts, current_month(now), ctx, now)
        open_work = await counts.open_work_by_unit(now)
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

    async def refresh(service: Service) -> None:
        await refresh_gauges(service.pool, ctx)

    return every(period, refresh, name="refresh_unit_gauges", failure="unit gauges not refreshed", log=log)


# --- the monthly list for the supervision office ---------------------------------------------


async def publish_monthly_list(service: Service, month: str) -> bool:
    """Publish ``month``'s list of publicly noticed orders, once; False when done before or empty."""
    async with service.unit_of_work() as uow:
        items = await use_cases.publish_monthly_list(uow, month, clock.now())
    if items:
        log.info("monthly list published", extra={"month": month, "items": items})
    return bool(items)


def monthly_list_publisher(period: float = 300.0):
    """The background task publishing last month's list early in each month (idempotent across replicas)."""

    async def publish(service: Service) -> None:
        await publish_monthly_list(service, previous_month())

    return every(period, publish, name="publish_monthly_lists", failure="monthly list not published", log=log)
