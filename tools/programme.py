"""``coffeetime followups | survey | figures``: follow-up draws, survey imports and the programme figures.

Each works on escalation's tables at ``DATABASE_URL`` (the running escalation
service relays a draw's events from its outbox within a second):

    coffeetime followups draw --month 2026-11 [--share 0.2] [--seed N]
    coffeetime followups list [--month 2026-11] [--contradicted] [--json]
    coffeetime survey import FILE --month 2026-11
    coffeetime survey list [--month 2026-11]
    coffeetime figures --from 2026-01-01 --to 2026-11-30 [--format table|json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import asyncpg

from services.escalation import figures, followups, survey
from services.escalation.config import context
from services.escalation.domain.figures import render_table
from services.escalation.handlers import SERVICE
from services.escalation.months import month_bounds
from services.escalation.unit_of_work import EscalationUnitOfWork
from shared import clock
from shared.settings import Settings
from shared.unit_of_work import Publications


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"search_path": SERVICE, "application_name": "coffeetime-cli"})


def _dsn() -> str | None:
    dsn = Settings().database_url
    if not dsn:
        print("DATABASE_URL is not set: these commands work on the running deployment's database", file=sys.stderr)
    return dsn


async def _followups(args: argparse.Namespace, dsn: str) -> int:
    ctx = context(Settings().district_config)
    if args.followups_command == "draw":
        month_bounds(args.month)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, server_settings={"search_path": SERVICE})
        try:
            publications = Publications(SERVICE)
            publications.declare(*followups.PUBLISHES)
            async with EscalationUnitOfWork(SERVICE, pool, publications) as uow:
                made = await followups.draw_month(uow, ctx, args.month, clock.now(), share=args.share,
                                                  seed=args.seed, by="command")
        finally:
            await pool.close()
        if args.json:
            print(made.model_dump_json(indent=2))
        else:
            print(f"{made.draw_id}: {len(made.appeals)} of {made.candidates} appeals, share {made.share:g}, "
                  f"seed {made.seed}" + ("" if made.created else " (drawn before)"))
            for a in made.appeals:
                print(f"  {a['appeal_id']}  {a['reason']}")
        return 0
    conn = await _connect(dsn)
    try:
        items = await followups.listing(conn, args.month, True if args.contradicted else None)
    finally:
        await conn.close()
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in items], ensure_ascii=False, indent=2))
    else:
        for i in items:
            flag = "  ✗ contradicts the enterprise's own rating" if i.contradicts else ""
            print(f"{i.month or '-':7}  {i.appeal_id:<20} {i.reason or 'not drawn':9} own {i.own_rating or '-':19} "
                  f"follow-up {i.outcome or 'not called':16} {i.rating or '':19}{flag}")
    return 0


async def _survey(args: argparse.Namespace, dsn: str) -> int:
    conn = await _connect(dsn)
    try:
        if args.survey_command == "list":
            for i in await survey.imports(conn, args.month):
                print(f"{i.import_id}  {i.month}  {i.rows} rows  {i.filename or ''}  {i.imported_at:%Y-%m-%d %H:%M}  "
                      f"{i.imported_by}")
            return 0
        path = Path(args.file)
        try:
            async with conn.transaction():
                made = await survey.import_survey(conn, args.month, path.read_bytes(), clock.now(),
                                                  filename=path.name, by="command")
        except survey.SurveyInvalid as exc:
            for e in exc.errors:
                print(f"{path.name}:{e.line}: {e.field}: {e.message}", file=sys.stderr)
            print(f"{len(exc.errors)} error(s); nothing was imported", file=sys.stderr)
            return 1
    finally:
        await conn.close()
    print(f"{made.import_id}: {made.rows} rows for {made.month}" + ("" if made.created else " (imported before)"))
    return 0


async def _figures(args: argparse.Namespace, dsn: str) -> int:
    conn = await _connect(dsn)
    try:
        result = await figures.figures(conn, context(Settings().district_config), args.period_from, args.period_to)
    finally:
        await conn.close()
    sys.stdout.write(result.model_dump_json(indent=2) + "\n" if args.format == "json" else render_table(result))
    return 0


def main(args: argparse.Namespace) -> int:
    """Run ``followups``, ``survey`` or ``figures`` (``args.command``)."""
    dsn = _dsn()
    if not dsn:
        return 2
    run = {"followups": _followups, "survey": _survey, "figures": _figures}[args.command]
    try:
        return asyncio.run(run(args, dsn))
    except (ValueError, followups.DrawConflict) as exc:
        print(f"coffeetime {args.command}: {exc}", file=sys.stderr)
        return 2
