"""``coffeetime report``: the month's evaluation and ranking of the units, from escalation's tables.

Connects to ``DATABASE_URL``; without it, an embedded PostgreSQL is started
(empty, so the ranking is empty). Prints a table (a rich table at a terminal),
JSON or CSV, or writes any format (csv, xlsx, pdf, png too) to ``--out FILE``;
a binary format without ``--out`` goes to standard output only when it is not a
terminal (``> units.xlsx``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from services.escalation import evaluation
from services.escalation.config import Context, context
from services.escalation.handlers import SERVICE
from services.escalation.unit_of_work import EvaluationRepository
from shared.settings import Settings
from tools import term


async def _ranking(dsn: str, month: str, ctx: Context, min_orders: int | None = None) -> evaluation.domain.Ranking:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SERVICE, "application_name": "coffeetime-report"})
    try:
        if await conn.fetchval("SELECT to_regclass('orders') IS NULL"):
            print(f"the {SERVICE} schema has no tables yet: nothing to rank", file=sys.stderr)
            return evaluation.domain.rank_units([], ctx.weights, ctx.min_orders)
        return await evaluation.month_ranking(EvaluationRepository(conn), month, ctx, min_orders=min_orders)
    finally:
        await conn.close()


def main(args: argparse.Namespace) -> int:
    """The ranking of ``args.month`` (``YYYY-MM``, default this month) as ``args.format``, headers in
    ``args.lang``, to ``args.out`` or standard output. 2: a bad month, format or language."""
    month = getattr(args, "month", None) or evaluation.current_month()
    fmt = getattr(args, "format", None) or "table"
    lang = getattr(args, "lang", None) or "zh"
    out = getattr(args, "out", None)
    try:
        evaluation.month_bounds(month)
    except ValueError as exc:
        print(f"coffeetime report: {exc}", file=sys.stderr)
        return 2
    if fmt not in evaluation.FORMATS or lang not in evaluation.LANGS:
        print(f"coffeetime report: format must be one of {', '.join(evaluation.FORMATS)}, "
              f"lang one of {', '.join(evaluation.LANGS)}", file=sys.stderr)
        return 2
    if fmt not in evaluation.TEXT_FORMATS and not out and sys.stdout.isatty():
        print(f"coffeetime report: {fmt} is a binary file: give --out FILE (or redirect the output)", file=sys.stderr)
        return 2
    min_orders = getattr(args, "min_orders", None)
    settings = Settings()
    ctx = context(settings.district_config)
    names = (["database"] if not settings.database_url else []) + ["count", fmt]
    with term.steps(f"report {month}", names) as step:
        if settings.database_url:
            step("count")
            ranking = asyncio.run(_ranking(settings.database_url, month, ctx, min_orders))
        else:
            from tools.embedded import EmbeddedServers

            step("database")
            with EmbeddedServers.from_env() as servers:
                step("count")
                ranking = asyncio.run(_ranking(servers.database_url, month, ctx, min_orders))
        step(fmt)
        body = None if fmt == "table" and not out and sys.stdout.isatty() else evaluation.export(
            ranking, month, ctx, fmt, lang)
    if out:
        Path(out).write_bytes(body)
        print(f"wrote {out} ({len(body)} bytes)", file=sys.stderr)
    elif body is None:
        _print_table(ranking, month, ctx, lang)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
        sys.stdout.flush()
    return 0


def _print_table(ranking: evaluation.domain.Ranking, month: str, ctx: Context, lang: evaluation.Lang) -> None:
    """The ranking's key columns as a rich table that wraps to the terminal, the formula under it."""
    keys = ("rank", "unit", "score", "received", "closure_rate", "satisfaction_rate", "follow_up_satisfaction_rate",
            "survey_satisfaction_rate", "on_time_rate", "overdue", "noticed", "note")
    columns = [c for c in evaluation.COLUMN_TABLE if c.key in keys]
    at = [evaluation.COLUMN_TABLE.index(c) for c in columns]
    rows = [[c.show(values[i]) for i, c in zip(at, columns, strict=True)]
            for values in evaluation.table_rows(ranking, ctx, lang)]
    title = (f"{ctx.district.name} {month} 单位考评排名" if lang == "zh"
             else f"unit evaluation {month}, {ctx.district.name}")
    rule = (f"受理少于{ranking.min_orders}件的单位列出但不排名" if lang == "zh"
            else f"units with fewer than {ranking.min_orders} orders received are listed but not ranked")
    term.print_table([c.header(lang) for c in columns], rows, title=title, caption=f"{ranking.formula}\n{rule}",
                     right=[i for i, c in enumerate(columns) if c.kind != "text"])

