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
from typing import Literal, NamedTuple, Protocol

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
    "COLUMNS", "COLUMN_TABLE", "FORMATS", "LANGS", "MEDIA_TYPES", "MONTH", "Column", "Format", "Lang",
    "RankingReport", "UnitRow", "current_month", "export", "export_filename", "gauge_refresher", "month_bounds",
    "month_evaluations", "month_ranking", "monthly_list_publisher", "previous_month", "publish_monthly_list",
    "ranking_document", "refresh_gauges", "render", "table_rows",
]

Format = Literal["table", "json", "csv", "xlsx", "pdf", "png"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv", "xlsx", "pdf", "png")
TEXT_FORMATS: tuple[Format, ...] = ("table", "json", "csv")
Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json", "table": "text/plain; charset=utf-8", "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf", "png": "image/png",
}


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


class Column(NamedTuple):
    """One column of the exports: the :class:`UnitRow` field, its Chinese and English headers, how it is shown."""

    key: str
    zh: str
    en: str
    kind: Literal["rank", "text", "score", "count", "rate"]

    def header(self, lang: Lang) -> str:
        return self.zh if lang == "zh" else self.en

    def show(self, value: str | int | float | None) -> str:
        """The value as a person reads it: rates in per cent, the score to 2 places, "-" for none."""
        if value is None or value == "":
            return "-"
        if self.kind == "rate":
            return f"{value * 100:.1f}%"
        return f"{value:.2f}" if self.kind == "score" else str(value)


#: The one definition of the exported columns (CSV, xlsx, the PDF/PNG table), in the order of
#: :class:`UnitRow` (follow-up and survey columns last, so a reader of the earlier columns by position
#: is not moved). Chinese headers by default, English ones with ``lang=en``.
COLUMN_TABLE: tuple[Column, ...] = (
    Column("rank", "排名", "Rank", "rank"),
    Column("unit_code", "单位代码", "Unit code", "text"),
    Column("unit", "单位", "Unit", "text"),
    Column("score", "得分", "Score", "score"),
    Column("received", "受理数", "Received", "count"),
    Column("signed_on_time", "按时签收数", "Signed on time", "count"),
    Column("due", "应办结数", "Due", "count"),
    Column("closed", "办结数", "Closed", "count"),
    Column("closed_on_time", "按时办结数", "Closed on time", "count"),
    Column("rated", "评价数", "Rated", "count"),
    Column("satisfied_or_basically", "满意及基本满意数", "Satisfied or basically", "count"),
    Column("returned", "退单数", "Returned", "count"),
    Column("reopened", "重办数", "Reopened", "count"),
    Column("overdue", "超期数", "Overdue", "count"),
    Column("noticed", "通报数", "Public notices", "count"),
    Column("closure_rate", "办结率", "Closure rate", "rate"),
    Column("satisfaction_rate", "满意率", "Satisfaction rate", "rate"),
    Column("on_time_rate", "按时办结率", "On-time closure rate", "rate"),
    Column("sign_on_time_rate", "按时签收率", "On-time signing rate", "rate"),
    Column("return_rate", "回退率", "Return rate", "rate"),
    Column("reopen_rate", "重办率", "Reopen rate", "rate"),
    Column("note", "备注", "Note", "text"),
    Column("follow_up_rated", "回访评价数", "Follow-up calls rated", "count"),
    Column("follow_up_satisfied", "回访满意数", "Follow-up satisfied", "count"),
    Column("follow_up_contradicted", "回访与自评不符数", "Follow-up contradicting", "count"),
    Column("follow_up_satisfaction_rate", "回访满意率", "Follow-up satisfaction rate", "rate"),
    Column("survey_rated", "第三方测评数", "Survey ratings", "count"),
    Column("survey_satisfied", "第三方测评满意数", "Survey satisfied", "count"),
    Column("survey_satisfaction_rate", "第三方测评满意率", "Survey satisfaction rate", "rate"),
)
COLUMNS: tuple[str, ...] = tuple(c.key for c in COLUMN_TABLE)


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


def note_of(row: domain.RankedUnit, min_orders: int, lang: Lang) -> str:
    """Why a unit is not ranked, in ``lang`` (the domain's note is English)."""
    if not row.note:
        return ""
    if lang == "en":
        return row.note
    if row.evaluation.received < min_orders:
        return f"受理少于{min_orders}件，列出不排名"
    return "无可计算的比率，不排名"


def table_rows(ranking: domain.Ranking, ctx: Context, lang: Lang = "zh") -> list[list[str | int | float | None]]:
    """One list per unit in the order of :data:`COLUMN_TABLE`: the exports' rows (the note in ``lang``)."""
    rows = []
    for ranked in ranking.rows:
        values = _row(ranked, ctx).model_dump()
        values["note"] = note_of(ranked, ranking.min_orders, lang)
        rows.append([values[c.key] for c in COLUMN_TABLE])
    return rows


def _csv(ranking: domain.Ranking, ctx: Context, lang: Lang) -> str:
    """What Excel on a Chinese desktop opens as it is: a BOM, one plain header row, CRLF, no comment lines."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.header(lang) for c in COLUMN_TABLE])
    for values in table_rows(ranking, ctx, lang):
        writer.writerow(["" if v is None else round(v, 4) if isinstance(v, float) else v for v in values])
    return out.getvalue()


def render(ranking: domain.Ranking, month: str, ctx: Context, fmt: Format, lang: Lang = "zh") -> str:
    """The ranking as a text table, JSON or CSV. JSON and the table carry the formula and the weights; the
    CSV is the plain table (headers in ``lang``), for Excel."""
    if fmt == "json":
        return ranking_document(ranking, month, ctx).model_dump_json(indent=2)
    if fmt == "csv":
        return _csv(ranking, ctx, lang)
    if fmt == "table":
        return f"unit evaluation {month}, {ctx.district.name}\n{ranking.render()}\n"
    raise ValueError(f"format must be one of {', '.join(TEXT_FORMATS)}, got {fmt!r}")


def export(ranking: domain.Ranking, month: str, ctx: Context, fmt: Format, lang: Lang = "zh") -> bytes:
    """The ranking as a file of ``fmt`` (:data:`FORMATS`): the text formats in UTF-8, xlsx, or a PDF/PNG with
    the chart (:mod:`services.escalation.exports`, which imports openpyxl and matplotlib only when asked)."""
    if fmt in TEXT_FORMATS:
        return render(ranking, month, ctx, fmt, lang).encode("utf-8")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from services.escalation import exports

    if fmt == "xlsx":
        return exports.xlsx(ranking, month, ctx, lang)
    return exports.chart(ranking, month, ctx, fmt, lang)


def export_filename(month: str, fmt: Format) -> str:
    """The file name an export is offered as (``units-2026-11.xlsx``)."""
    return f"units-{month}.{'txt' if fmt == 'table' else fmt}"


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
