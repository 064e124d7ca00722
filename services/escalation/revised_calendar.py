"""A revised official calendar: load a State Council year, re-plan the open deadlines, watch for unknown years.

* :func:`load_year` — store a checked year (:func:`domain.parse_year`) whole in
  ``escalation.calendar_years``, then :func:`replan`. ``dry_run`` stores nothing
  and gives the moves the year would make.
* :func:`replan` — every running clock whose published deadline the current
  calendar (loaded years, overrides, the package) puts elsewhere is moved: one
  unit of work per order, through the same path as an extension
  (:func:`use_cases.apply_events`: firings reconciled, ``ct.deadline.set``), plus
  ``ct.deadline.moved`` for the unit. Run twice, the second run moves nothing.
  Every replica runs it once at start-up (a local override added, a newer
  ``chinese-calendar``); ``coffeetime calendar replan`` and ``POST /calendar/replan``
  on command; a load runs it at once.
* :func:`refresh_deadline_gauges` — open deadlines in a year nobody knows
  (``coffeetime_deadlines_in_unknown_year``) and the seven-day horizon per unit
  (``coffeetime_deadlines_due_ahead``).

Callers pass a factory of units of work (the service's, or the CLI's own pool):
each order's re-plan is its own transaction, so one failure stops nothing else
and a second run picks up what the first left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import datetime

import chinese_calendar

from services.escalation import domain, use_cases
from services.escalation.config import CALENDAR_POLL_S, GAUGE_REFRESH_S, Context
from services.escalation.metrics import DEADLINES_AHEAD, DEADLINES_IN_UNKNOWN_YEAR, DEADLINES_MOVED
from services.escalation.unit_of_work import EscalationUnitOfWork
from shared import clock
from shared.workcalendar import OfficialYear, WorkCalendar, is_official, known_years

log = logging.getLogger("coffeetime.escalation.calendar")

UnitOfWorkFactory = Callable[[], EscalationUnitOfWork]

PAGE = 500
"""Orders read per page when looking for the deadlines a calendar moves."""

HORIZON_DAYS = 7
"""Days of the deadline horizon gauge: today (0) to six days ahead."""


@dataclasses.dataclass
class ReplanReport:
    """What a re-plan moved (or would move, ``dry_run``), out of how many running orders it checked."""

    checked: int = 0
    moves: list[domain.DeadlineMove] = dataclasses.field(default_factory=list)
    dry_run: bool = False

    @property
    def orders_moved(self) -> int:
        return len({m.order_id for m in self.moves})

    def lines(self) -> list[str]:
        """The diff, one line a moved deadline, and a summary."""
        verb = "would move" if self.dry_run else "moved"
        return [m.line() for m in self.moves] + [
            f"{self.checked} running order(s) checked; {len(self.moves)} deadline(s) of "
            f"{self.orders_moved} order(s) {verb}"]

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "checked": self.checked, "orders_moved": self.orders_moved,
                "moves": [m.to_dict() for m in self.moves]}


@dataclasses.dataclass
class LoadReport:
    """A year loaded: loaded, replaced, unchanged (the same schedule again) or, in a dry run, would_load."""

    year: int
    digest: str
    outcome: str
    replan: ReplanReport

    def to_dict(self) -> dict:
        return {"year": self.year, "digest": self.digest, "outcome": self.outcome, "replan": self.replan.to_dict()}


async def refresh(uow_factory: UnitOfWorkFactory, ctx: Context) -> bool:
    """Bring the process's calendar up to date with the stored years; returns whether it changed."""
    async with uow_factory() as uow:
        return await ctx.calendar_sync.refresh(uow.calendar, ctx.calendar)


async def pending(uow_factory: UnitOfWorkFactory, ctx: Context,
                  calendar: WorkCalendar) -> tuple[int, list[tuple[str, list[domain.DeadlineMove]]]]:
    """(running orders checked, [(appeal_id, moves)] per order whose published deadline ``calendar`` moves)."""
    checked, found, after = 0, [], ""
    while True:
        async with uow_factory() as uow:
            ids = await uow.calendar.running_orders(after, PAGE)
            if not ids:
                break
            stored = await uow.clocks.load_orders(ids)
            closures = await uow.clocks.closures_of({f.appeal_id for f, _ in stored.values()})
        for order_id in ids:
            facts, published = stored[order_id]
            facts = use_cases.with_appeal_stops(facts, closures)
            plan = domain.plan_order(facts, calendar)
            if plan.running:
                checked += 1
            moves = domain.pending_moves(facts, plan, published, calendar)
            if moves:
                found.append((facts.appeal_id, moves))
        after = ids[-1]
    return checked, found


async def replan(uow_factory: UnitOfWorkFactory, ctx: Context, now: datetime, dry_run: bool = False,
                 calendar: WorkCalendar | None = None) -> ReplanReport:
    """Move every running deadline the current calendar puts elsewhere; ``dry_run`` only lists them.

    ``calendar`` (dry runs only): plan with this one instead (e.g. with a year not stored yet).
    """
    if calendar is None:
        await refresh(uow_factory, ctx)
    checked, found = await pending(uow_factory, ctx, calendar or ctx.calendar)
    report = ReplanReport(checked=checked, dry_run=dry_run)
    if dry_run:
        report.moves = [m for _, moves in found for m in moves]
        return report
    for appeal_id, moves in found:
        async with uow_factory() as uow:
            await uow.clocks.lock_appeals([appeal_id])
            await ctx.calendar_sync.refresh(uow.calendar, ctx.calendar)
            # planned again under the lock: another replica may have moved it meanwhile (then nothing moves)
            report.moves += await use_cases.apply_events(uow, ctx, [], now, replan=[moves[0].order_id])
    for move in report.moves:
        DEADLINES_MOVED.labels(move.clock).inc()
    ctx.calendar_sync.replans += 1
    if report.moves:
        log.info("deadlines re-planned on the revised calendar",
                 extra={"moved": len(report.moves), "orders": report.orders_moved, "checked": checked})
    return report


async def load_year(uow_factory: UnitOfWorkFactory, ctx: Context, year: OfficialYear, by: str, now: datetime,
                    dry_run: bool = False, over_package: bool = False) -> LoadReport:
    """Store ``year`` (checked) whole and re-plan; ``dry_run``: store nothing, give the moves it would make.

    Raises :class:`domain.ScheduleInvalid` for a year that may not be loaded now
    (:func:`domain.loadable_problems`: this year or next; over the package only when asked).
    """
    problems = domain.loadable_problems(year, now.astimezone(ctx.calendar.tz).year, is_official(year.year),
                                        over_package)
    if problems:
        raise domain.ScheduleInvalid(problems)
    if dry_run:
        async with uow_factory() as uow:
            stored = await uow.calendar.year(year.year)
        outcome = "unchanged" if stored is not None and stored["digest"] == year.digest else "would_load"
        moves = await replan(uow_factory, ctx, now, dry_run=True, calendar=ctx.calendar.with_year(year))
        return LoadReport(year.year, year.digest, outcome, moves)
    async with uow_factory() as uow:
        outcome = await uow.calendar.save(year, now, by)
    log.info("State Council year loaded", extra={"year": year.year, "outcome": outcome, "by": by,
                                                 "holidays": len(year.holidays), "workdays": len(year.workdays)})
    return LoadReport(year.year, year.digest, outcome, await replan(uow_factory, ctx, now))


# --- gauges ------------------------------------------------------------------------------

_seen_unknown: set[str] = set()
_seen_ahead: set[tuple[str, str]] = set()


async def refresh_deadline_gauges(uow_factory: UnitOfWorkFactory, ctx: Context, now: datetime) -> dict[int, int]:
    """Set the unknown-year and horizon gauges from the open deadlines; returns open deadlines per unknown year.

    A label counted before and not now is set to 0 (the alert clears), not left at its last value.
    """
    today = now.astimezone(ctx.calendar.tz).date()
    async with uow_factory() as uow:
        rows = await uow.calendar.open_deadlines(today)
    unknown: dict[int, int] = {}
    ahead: dict[tuple[str, str], int] = {(u.unit_code, str(d)): 0 for u in ctx.district.units
                                         for d in range(HORIZON_DAYS)}
    for r in rows:
        if not ctx.calendar.knows(r["year"]):
            unknown[r["year"]] = unknown.get(r["year"], 0) + r["n"]
        if 0 <= r["days_ahead"] < HORIZON_DAYS:
            key = (r["unit_code"], str(r["days_ahead"]))
            ahead[key] = ahead.get(key, 0) + r["n"]
    for year in _seen_unknown - {str(y) for y in unknown}:
        DEADLINES_IN_UNKNOWN_YEAR.labels(year).set(0)
    for year, n in unknown.items():
        DEADLINES_IN_UNKNOWN_YEAR.labels(str(year)).set(n)
    _seen_unknown.update(str(y) for y in unknown)
    for key in _seen_ahead - set(ahead):
        DEADLINES_AHEAD.labels(*key).set(0)
    for key, n in ahead.items():
        DEADLINES_AHEAD.labels(*key).set(n)
    _seen_ahead.update(ahead)
    return unknown


def calendar_watch(ctx: Context):
    """The background task: re-plan once at start-up, then follow the loaded years and keep the gauges."""

    async def watch_calendar(service) -> None:
        replanned, gauges_at = False, 0.0
        while True:
            try:
                if not replanned:
                    report = await replan(service.unit_of_work, ctx, clock.now())
                    replanned = True
                    log.info("start-up re-plan done", extra={"checked": report.checked, "moved": len(report.moves)})
                else:
                    await refresh(service.unit_of_work, ctx)
                if time.monotonic() - gauges_at >= GAUGE_REFRESH_S:
                    unknown = await refresh_deadline_gauges(service.unit_of_work, ctx, clock.now())
                    gauges_at = time.monotonic()
                    if unknown:
                        log.warning("open deadlines fall in a year the work calendar does not know: load its "
                                    "State Council schedule (coffeetime calendar load FILE)",
                                    extra={"years": sorted(unknown), "deadlines": sum(unknown.values())})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("calendar watch round failed; retrying", extra={"error": repr(exc)})
            await asyncio.sleep(CALENDAR_POLL_S)

    watch_calendar.ctx = ctx  # type: ignore[attr-defined] - found by Service.background_owner
    return watch_calendar



# --- what the calendar knows -------------------------------------------------------------


def years_view(cal: WorkCalendar) -> dict:
    """The years the calendar knows: loaded State Council years (with their notices) and the package's span."""
    package = known_years()
    return {"loaded": [{"year": y.year, "source": y.source, "digest": y.digest}
                       for y in sorted(cal.loaded_years.values(), key=lambda y: y.year)],
            "package": {"first": package[0], "last": package[-1]} if package else None}


def year_view(cal: WorkCalendar, year: int, row=None) -> dict:
    """One year: ``source`` (loaded, package or unknown), its days off by holiday and its make-up working days.

    ``row``: the stored ``calendar_years`` row of a loaded year (who loaded it, when).
    """
    source = cal.source_of(year)
    view: dict = {"year": year, "source": source, "notice": "", "holidays": [], "workdays": []}
    if source == "loaded":
        loaded = cal.loaded_years[year]
        view |= domain.document_of(loaded) | {"source": source, "notice": loaded.source, "digest": loaded.digest}
        if row is not None:
            view |= {"loaded_at": row["loaded_at"].isoformat(), "loaded_by": row["loaded_by"]}
    elif source == "package":
        holidays = {d: str(n) for d, n in chinese_calendar.holidays.items() if d.year == year}
        workdays = {d: str(n) for d, n in chinese_calendar.workdays.items() if d.year == year}
        view |= {k: v for k, v in domain.document_of(OfficialYear(year, holidays, workdays)).items()
                 if k in ("holidays", "workdays")}
        view["notice"] = f"chinese-calendar {getattr(chinese_calendar, '__version__', '')}".strip()
    else:
        view["notice"] = ("unknown: planned Monday to Friday; load the State Council's schedule "
                          "(coffeetime calendar load FILE)")
    return view
