"""``coffeetime report``: the month's evaluation and ranking of the units, from escalation's tables.

Connects to ``DATABASE_URL``; without it, an embedded PostgreSQL is started
(empty, so the ranking is empty). Prints a table, JSON or CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from services.escalation import evaluation
from services.escalation.config import Context, context
from services.escalation.handlers import SERVICE
from services.escalation.unit_of_work import EvaluationRepository
from shared.settings import Settings


async def _ranking_text(dsn: str, month: str, fmt: evaluation.Format, ctx: Context,
                        min_orders: int | None = None) -> str:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SERVICE, "application_name": "coffeetime-report"})
    try:
        if await conn.fetchval("SELECT to_regclass('orders') IS NULL"):
            print(f"the {SERVICE} schema has no tables yet: nothing to rank", file=sys.stderr)
            ranking = evaluation.domain.rank_units([], ctx.weights, ctx.min_orders)
        else:
            ranking = await evaluation.month_ranking(EvaluationRepository(conn), month, ctx, min_orders=min_orders)
    finally:
        await conn.close()
    return evaluation.render(ranking, month, ctx, fmt)


def main(args: argparse.Namespace) -> int:
    """Print the ranking of ``args.month`` (``YYYY-MM``, default this month) as ``args.format``."""
    month = getattr(args, "month", None) or evaluation.current_month()
    fmt = getattr(args, "format", None) or "table"
    try:
        evaluation.month_bounds(month)
    except ValueError as exc:
        print(f"coffeetime report: {exc}", file=sys.stderr)
        return 2
    if fmt not in evaluation.FORMATS:
        print(f"coffeetime report: format must be one of {', '.join(evaluation.FORMATS)}", file=sys.stderr)
        return 2
    min_orders = getattr(args, "min_orders", None)
    settings = Settings()
    ctx = context(settings.district_config)
    if settings.database_url:
        text = asyncio.run(_ranking_text(settings.database_url, month, fmt, ctx, min_orders))
    else:
        from tools.embedded import EmbeddedServers

        with EmbeddedServers.from_env() as servers:
            text = asyncio.run(_ranking_text(servers.database_url, month, fmt, ctx, min_orders))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
