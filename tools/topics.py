"""``coffeetime topics``: the month's hot topics (热点研判, 每月一题) from intake's appeals.

Connects to ``DATABASE_URL``; without it, an embedded PostgreSQL is started
(empty, so there is nothing to analyse). Prints a table, JSON or CSV (UTF-8 with
a BOM, as Excel opens it), the same document as intake's ``GET /topics``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from services.intake import topics
from services.intake.__main__ import NAME
from services.intake.store import TopicAppeals
from shared import clock
from shared.district import load_district
from shared.settings import Settings


async def _topics_text(dsn: str, month: str, fmt: topics.Format, settings: topics.TopicSettings,
                       district_config: str | None) -> str:
    district = load_district(district_config)

    def category_of(hint: str) -> str | None:
        category = district.category(hint)
        return category.name if category else None

    conn = await asyncpg.connect(dsn, server_settings={"search_path": NAME, "application_name": "coffeetime-topics"})
    try:
        if await conn.fetchval("SELECT to_regclass('appeals') IS NULL"):
            print(f"the {NAME} schema has no tables yet: no appeals to analyse", file=sys.stderr)
            appeals = []
        else:
            appeals = await TopicAppeals(conn, category_of).in_window(*topics.window(month, settings.months_back))
    finally:
        await conn.close()
    return topics.render(topics.analyse(appeals, month, settings), fmt)


def main(args: argparse.Namespace) -> int:
    """Print the hot topics of ``args.month`` (``YYYY-MM``, default this month) as ``args.format``."""
    month = getattr(args, "month", None) or topics.month_of(clock.now())
    fmt = getattr(args, "format", None) or "table"
    months_back = getattr(args, "months_back", None) or 3
    try:
        topics.month_bounds(month)
    except ValueError as exc:
        print(f"coffeetime topics: {exc}", file=sys.stderr)
        return 2
    if fmt not in topics.FORMATS:
        print(f"coffeetime topics: format must be one of {', '.join(topics.FORMATS)}", file=sys.stderr)
        return 2
    if not 1 <= months_back <= 24:
        print("coffeetime topics: --months-back must be between 1 and 24", file=sys.stderr)
        return 2
    settings = Settings()
    analysis = topics.TopicSettings(months_back=months_back)
    if settings.database_url:
        text = asyncio.run(_topics_text(settings.database_url, month, fmt, analysis, settings.district_config))
    else:
        from tools.embedded import EmbeddedServers

        with EmbeddedServers.from_env() as servers:
            text = asyncio.run(_topics_text(servers.database_url, month, fmt, analysis, settings.district_config))
    out = getattr(args, "out", None)
    if out:
        # newline="": the CSV's own CRLF line ends stay as they are
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(f"wrote {out}", file=sys.stderr)
        return 0
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
