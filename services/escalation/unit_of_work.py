"""Escalation's unit of work: the shared one (transaction, outbox, inbox) with escalation's repositories.

The use cases (:mod:`services.escalation.use_cases`) read and write through
``uow.clocks`` (order facts, closures, ratings, the ladder's firings) and
``uow.evaluation`` (the monthly counts and notices) and ``uow.calendar`` (the loaded
State Council years); the SQL stays in
:mod:`services.escalation.store`. ``tests/unit/test_escalation_service_layer.py``
puts in-memory repositories of the same shape in their place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import date, datetime

import asyncpg

from services.escalation import followups, store
from services.escalation.domain import (
    AppealStep,
    Clock,
    ClosureKind,
    Firing,
    OrderFacts,
    OrderPlan,
    ScheduleInvalid,
    StepState,
    document_of,
    parse_year,
)
from services.escalation.store import Closure, DueStep, Rating
from shared.contracts import MonthlyListItem
from shared.unit_of_work import UnitOfWork
from shared.workcalendar import OfficialYear

log = logging.getLogger("coffeetime.escalation.calendar")


class ClockRepository:
    """The clocks of the work orders: facts, closures, ratings and the ladder's firings, on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_appeals(self, appeal_ids: Iterable[str]) -> None:
        """Serialise the handling of these appeals' events until commit (:func:`store.lock_appeals`)."""
        await store.lock_appeals(self.conn, appeal_ids)

    async def add_closures(self, closures: Sequence[Closure]) -> None:
        """Store appeal closures and merges, once per event."""
        await store.add_closures(self.conn, closures)

    async def add_ratings(self, ratings: Sequence[Rating]) -> None:
        """Store the units' ratings, once per (event, unit)."""
        await store.add_ratings(self.conn, ratings)

    async def orders_of_appeals(self, appeal_ids: Iterable[str]) -> list[str]:
        """The ids of the stored orders of these appeals."""
        return await store.orders_of_appeals(self.conn, appeal_ids)

    async def load_orders(self, order_ids: Iterable[str]
                          ) -> dict[str, tuple[OrderFacts, dict[Clock, datetime | None]]]:
        """The stored facts of these orders and the deadlines last published."""
        return await store.load_orders(self.conn, order_ids)

    async def closures_of(self, appeal_ids: Iterable[str]) -> dict[str, list[tuple[datetime, ClosureKind]]]:
        """Each appeal's closures as (closed_at, kind)."""
        return await store.closures_of(self.conn, appeal_ids)

    async def firing_states(self, order_ids: Iterable[str]) -> dict[str, dict[str, StepState]]:
        """order_id → step_key → pending, fired or cancelled."""
        return await store.firing_states(self.conn, order_ids)

    async def save_orders(self, orders: Sequence[tuple[OrderFacts, OrderPlan, dict[Clock, datetime | None]]]) -> None:
        """Write the orders' merged facts, deadlines and the deadlines published."""
        await store.save_orders(self.conn, orders)

    async def add_firings(self, steps: Sequence[tuple[OrderFacts, Firing]], now: datetime) -> None:
        """Plan ladder steps; a step already stored stays as it is."""
        await store.add_firings(self.conn, steps, now)

    async def add_difficult(self, requests: Sequence[tuple[OrderFacts, datetime | None, str]], now: datetime) -> None:
        """The units' escalation requests: a ``difficult`` step firing at once, once per order."""
        await store.add_difficult(self.conn, requests, now)

    async def cancel_firings(self, steps: Sequence[tuple[str, str]], now: datetime) -> None:
        """Cancel these pending (order_id, step_key) steps (a step fired meanwhile stays fired)."""
        await store.cancel_firings(self.conn, steps, now)

    async def claim_due(self, now: datetime, limit: int) -> list[DueStep]:
        """Lock up to ``limit`` due steps no other replica holds."""
        return await store.claim_due(self.conn, now, limit)

    async def mark_fired(self, fired: Sequence[tuple[int, str]], now: datetime, replica: str) -> None:
        """(firing_id, event_id) of the steps whose events this transaction stages."""
        await store.mark_fired(self.conn, fired, now, replica)

    async def announce_appeal_steps(self, steps: Sequence[tuple[AppealStep, str, str]], now: datetime,
                                    replica: str) -> set[AppealStep]:
        """Record appeal steps (step, event id, late orders JSON); returns those not recorded before."""
        return await store.announce_appeal_steps(self.conn, steps, now, replica)


class EvaluationRepository:
    """What the monthly evaluation counts, on one connection (also usable outside a unit of work)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def unit_month_counts(self, start: datetime, end: datetime, now: datetime) -> list[dict]:
        """Each unit's counts for [start, end) (:func:`store.unit_month_counts`)."""
        return await store.unit_month_counts(self.conn, start, end, now)

    async def unit_month_checks(self, month: str) -> dict[str, dict[str, int]]:
        """Per unit: the month's follow-up and survey ratings (:func:`followups.unit_month_checks`)."""
        return await followups.unit_month_checks(self.conn, month)

    async def open_work_by_unit(self, now: datetime) -> list[asyncpg.Record]:
        """Per unit: open orders and, of those, the overdue ones."""
        return await store.open_work_by_unit(self.conn, now)

    async def noticed_in(self, start: datetime, end: datetime) -> list[MonthlyListItem]:
        """The orders reported to the supervision office (通报) in [start, end), oldest first."""
        return [MonthlyListItem(appeal_id=r["appeal_id"], order_id=r["order_id"], unit_code=r["unit_code"],
                                unit=r["unit"] or r["unit_code"], summary=r["summary"] or "", due_at=r["due_at"],
                                level=r["level"], noticed_at=r["fired_at"])
                for r in await store.noticed_in(self.conn, start, end)]


class CalendarRepository:
    """The State Council years the district loaded (``calendar_years``), on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def signature(self) -> str:
        """(year, digest) of every loaded year, as one string: equal signatures, equal calendars."""
        return await store.calendar_signature(self.conn)

    async def years(self) -> list[OfficialYear]:
        """Every loaded year, checked again as it is read: a row edited by hand into a bad one is left out
        (and logged), so it neither half-applies nor stops the clocks."""
        years = []
        for r in await store.calendar_years(self.conn):
            try:
                years.append(parse_year(json.dumps(r["document"], ensure_ascii=False)))
            except ScheduleInvalid as exc:
                log.error("a stored State Council year is not valid; it is left out: load it again",
                          extra={"year": r["year"], "error": str(exc)})
        return years

    async def year(self, year: int) -> asyncpg.Record | None:
        """The stored row of ``year`` (document, digest, source, loaded_at, loaded_by), or ``None``."""
        rows = await store.calendar_years(self.conn, year)
        return rows[0] if rows else None

    async def save(self, year: OfficialYear, now: datetime, by: str) -> str:
        """Store a checked year whole; returns loaded, replaced or unchanged (the same schedule again)."""
        return await store.save_calendar_year(self.conn, year.year, document_of(year), year.digest, year.source,
                                              now, by)

    async def running_orders(self, after: str, limit: int) -> list[str]:
        """A page of the ids of orders whose clocks may run, in id order."""
        return await store.running_orders(self.conn, after, limit)

    async def open_deadlines(self, today: date) -> list[asyncpg.Record]:
        """Open handling deadlines per unit, year and days ahead of ``today``."""
        return await store.open_deadlines(self.conn, today)


class EscalationUnitOfWork(UnitOfWork):
    """One transaction of escalation, with ``clocks``, ``evaluation`` and ``calendar`` on its connection."""

    clocks: ClockRepository
    evaluation: EvaluationRepository
    calendar: CalendarRepository

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        """Build the repositories on the transaction's connection."""
        self.clocks = ClockRepository(conn)
        self.evaluation = EvaluationRepository(conn)
        self.calendar = CalendarRepository(conn)
