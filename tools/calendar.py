"""``coffeetime calendar load|show|replan``: the State Council's schedule for a year, and re-planning deadlines.

* ``load FILE`` — check a year file (YAML or JSON; see
  ``services/escalation/calendars/2027.example.yaml``), store it whole in
  ``escalation.calendar_years`` and re-plan the open deadlines it moves (each
  order in its own transaction, through escalation's own use case). Prints each
  bad entry and stores nothing when the file is wrong (exit 2). ``--dry-run``
  checks it and prints the deadlines it would move.
* ``show YEAR`` — where a year's holidays come from (loaded, package, unknown)
  and its days off and make-up working days.
* ``replan`` — re-plan every open deadline on the current calendar (after a
  local override was added, or a newer ``chinese-calendar``); ``--dry-run`` prints
  the diff only.

It works on the database (``DATABASE_URL``): the ``ct.deadline.set`` and
``ct.deadline.moved`` of a re-plan are written to escalation's outbox in the
transaction that moves the order, and a running escalation replica relays them
(within a second; they wait for one if none runs). Running replicas take up a
loaded year within ``CALENDAR_POLL_S`` seconds, and at once in their next clock batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from services.escalation import domain, revised_calendar
from services.escalation.config import build_context
from services.escalation.unit_of_work import EscalationUnitOfWork
from services.escalation.use_cases import PUBLISHES
from shared import clock
from shared.db import create_pool, migrate
from shared.settings import Settings
from shared.unit_of_work import Publications

SERVICE = "escalation"
MIGRATIONS = Path(__file__).parents[1] / "services" / "escalation" / "migrations"


def _print_year(view: dict) -> None:
    print(f"{view['year']}: {view['source']}" + (f" ({view['notice']})" if view.get("notice") else ""))
    if view.get("loaded_by"):
        print(f"  loaded {view['loaded_at']} by {view['loaded_by']}, digest {view['digest']}")
    for h in view["holidays"]:
        print(f"  {h['name']}: {', '.join(h['dates'])}")
    if view["workdays"]:
        print("  make-up working days: " + ", ".join(
            w["date"] + (f" ({w['for']})" if w["for"] else "") for w in view["workdays"]))


async def run(args: argparse.Namespace, dsn: str, district_config: str | None = None) -> int:
    """The command on the database at ``dsn``; the exit status (2: a bad file, nothing stored)."""
    ctx = build_context(district_config)  # its own calendar, as a process of its own has
    loaded_from = None
    if args.calendar_command == "load":
        loaded_from = Path(args.file)
        try:
            year = domain.parse_year(loaded_from.read_bytes())
        except OSError as exc:
            print(f"coffeetime calendar load: {exc}", file=sys.stderr)
            return 2
        except domain.ScheduleInvalid as exc:
            _print_problems(loaded_from, exc)
            return 2
    await migrate(dsn, SERVICE, MIGRATIONS)
    pool = await create_pool(dsn, SERVICE, size=2)
    publications = Publications(SERVICE)
    publications.declare(*PUBLISHES)

    def unit_of_work() -> EscalationUnitOfWork:
        return EscalationUnitOfWork(SERVICE, pool, publications)

    try:
        if args.calendar_command == "show":
            await revised_calendar.refresh(unit_of_work, ctx)
            async with unit_of_work() as uow:
                row = await uow.calendar.year(args.year)
            view = revised_calendar.year_view(ctx.calendar, args.year, row)
            print(json.dumps(view, ensure_ascii=False, indent=2)) if args.json else _print_year(view)
            return 0
        if args.calendar_command == "load":
            try:
                report = await revised_calendar.load_year(unit_of_work, ctx, year, "cli", clock.now(),
                                                          dry_run=args.dry_run, over_package=args.over_package)
            except domain.ScheduleInvalid as exc:
                _print_problems(loaded_from, exc)
                return 2
            if args.json:
                print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
            else:
                print(f"{report.year}: {report.outcome} (digest {report.digest}, {len(year.holidays)} days off, "
                      f"{len(year.workdays)} make-up working days)")
                print("\n".join(report.replan.lines()))
            return 0
        report = await revised_calendar.replan(unit_of_work, ctx, clock.now(), dry_run=args.dry_run)
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) if args.json else "\n".join(report.lines()))
        return 0
    finally:
        await pool.close()


def _print_problems(path: Path | None, exc: domain.ScheduleInvalid) -> None:
    print(f"coffeetime calendar load: {path} is not loadable; nothing was stored:", file=sys.stderr)
    for p in exc.problems:
        print(f"  {p.field}: {p.message} [{p.rule}]", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    settings = Settings()
    if settings.database_url:
        return asyncio.run(run(args, settings.database_url, settings.district_config))
    from tools.embedded import EmbeddedServers

    with EmbeddedServers.from_env() as servers:
        return asyncio.run(run(args, servers.database_url, settings.district_config))
