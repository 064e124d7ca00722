"""Programme figures over any period: ``coffeetime figures``, ``GET /figures`` and the ``coffeetime_programme_*`` gauges.

Escalation owns them, beside the monthly evaluation: it keeps its own copy of what
it counts, ``programme_events`` from ``ct.in.event`` (a record intake rejects is
skipped here too: the bus parses it with the same contract) and ``programme_appeals``
from ``ct.appeal.registered`` (coffee-event items only: which appeal is which item,
and the master of a duplicate). Closures and ratings are escalation's own tables.
The arithmetic and the attendees' roles are :mod:`services.escalation.domain.figures`.
The gauges show the calendar year to date (Asia/Shanghai).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import asyncpg
from prometheus_client import Gauge

from services.escalation.config import Context
from services.escalation.domain.figures import (
    AppealFacts,
    EventFacts,
    ProgrammeFigures,
    enterprise_key,
    programme_figures,
)
from services.escalation.periodic import every
from shared import clock
from shared.bus import Delivery
from shared.contracts import AppealRegistered, EventRecord, subjects
from shared.contracts.common import SHANGHAI, Channel
from shared.metrics import registry
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.figures")

PROGRAMME_EVENTS = Gauge("coffeetime_programme_events", "Coffee events held this year, by kind (main 主活动, sub 子活动)",
                         ["kind"], registry=registry)
PROGRAMME_ENTERPRISES = Gauge("coffeetime_programme_enterprises", "Enterprises that took part in this year's events",
                              registry=registry)
PROGRAMME_ATTENDANCES = Gauge("coffeetime_programme_attendances",
                              "Attendances at this year's events, by role (district_leader, department_head)",
                              ["role"], registry=registry)
PROGRAMME_UNIT_PARTICIPATION = Gauge("coffeetime_programme_unit_participation_rate",
                                     "Share of member units that took part in this year's events", registry=registry)
PROGRAMME_APPEALS = Gauge("coffeetime_programme_appeals",
                          "Appeals raised at this year's events, by event kind (main, sub, all) and state "
                          "(collected, closed, rated, satisfied)", ["kind", "state"], registry=registry)
PROGRAMME_CLOSURE_RATE = Gauge("coffeetime_programme_closure_rate",
                               "Closed over collected of this year's events' appeals (办结率), by event kind",
                               ["kind"], registry=registry)
PROGRAMME_SATISFACTION_RATE = Gauge("coffeetime_programme_satisfaction_rate",
                                    "Satisfied over rated of this year's events' appeals (满意率), by event kind",
                                    ["kind"], registry=registry)


# --- what is kept ---------------------------------------------------------------------------------


async def keep_events(conn: asyncpg.Connection, records: Sequence[EventRecord], now: datetime) -> None:
    """Keep each coffee event once (the first record of an event id, as intake does)."""
    rows = []
    for r in records:
        keys = sorted({k for i in r.items if (k := enterprise_key(i.enterprise_name, i.enterprise_uscc))})
        attendees = [a if isinstance(a, str) else a.model_dump(exclude_none=True) for a in r.attendees]
        rows.append((r.event_id, r.kind.value, r.date, r.organizer_unit, json.dumps(attendees, ensure_ascii=False),
                     json.dumps(keys, ensure_ascii=False), len(r.items), now))
    if rows:
        await conn.executemany(
            "INSERT INTO programme_events (event_id, kind, event_date, organizer_unit, attendees, enterprises, items, "
            "recorded_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8) ON CONFLICT (event_id) DO NOTHING", rows)


async def keep_appeals(conn: asyncpg.Connection, registered: Sequence[AppealRegistered]) -> None:
    """Keep which appeal is which coffee-event item (other channels are not counted here)."""
    rows = [(e.appeal_id, e.proposal.event_id, e.proposal.item_no, e.proposal.event_kind, e.duplicate_of,
             e.occurred_at) for e in registered if e.channel == Channel.coffee_event and e.proposal is not None]
    if rows:
        await conn.executemany(
            "INSERT INTO programme_appeals (appeal_id, event_id, item_no, event_kind, duplicate_of, registered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (appeal_id) DO NOTHING", rows)


def period_end(period_to: date) -> datetime:
    """The first moment after ``period_to`` (Asia/Shanghai)."""
    return datetime.combine(period_to + timedelta(days=1), time(0, 0), tzinfo=SHANGHAI)


async def figures(conn: asyncpg.Connection, ctx: Context, period_from: date, period_to: date,
                  now: datetime | None = None) -> ProgrammeFigures:
    """The programme's figures for the events dated in [period_from, period_to], closures and ratings by its end."""
    if period_to < period_from:
        raise ValueError("to: before from")
    end = min(period_end(period_to), now or clock.now())
    events = await conn.fetch("SELECT * FROM programme_events WHERE event_date BETWEEN $1 AND $2", period_from,
                              period_to)
    appeals = await conn.fetch(
        """
        SELECT a.appeal_id, e.kind,
               EXISTS (SELECT 1 FROM closures c WHERE c.appeal_id IN (a.appeal_id, a.duplicate_of)
                       AND c.kind = 'closed' AND c.closed_at < $3) AS closed,
               (SELECT r.rating FROM ratings r WHERE r.appeal_id = a.appeal_id AND r.rated_at < $3
                ORDER BY r.rated_at DESC, r.event_id DESC LIMIT 1) AS rating
        FROM programme_appeals a JOIN programme_events e ON e.event_id = a.event_id
        WHERE e.event_date BETWEEN $1 AND $2
        """, period_from, period_to, end)
    return programme_figures(
        period_from, period_to,
        [EventFacts(event_id=e["event_id"], kind=e["kind"], date=e["event_date"], organizer_unit=e["organizer_unit"],
                    items=e["items"], enterprises=tuple(json.loads(e["enterprises"])),
                    attendees=tuple(json.loads(e["attendees"]))) for e in events],
        [AppealFacts(appeal_id=a["appeal_id"], event_kind=a["kind"], closed=a["closed"], rating=a["rating"])
         for a in appeals],
        ctx.district)


# --- wiring ---------------------------------------------------------------------------------------


def register(service: Service, ctx: Context, refresh_s: float = 30.0) -> None:
    """Subscribe to the coffee events and the registered appeals, and refresh the gauges."""

    async def handle_events(batch: list[Delivery]) -> None:
        """Coffee events (ct.in.event): kept once each for the programme figures; invalid ones are intake's to refuse."""
        records = [d.message for d in batch if d.message is not None]
        if records:
            async with service.unit_of_work() as uow:
                await keep_events(uow.conn, records, clock.now())

    async def handle_registered(batch: list[Delivery]) -> None:
        """Registered appeals: which one is which coffee-event item (and a duplicate's master)."""
        registered = [d.message for d in batch]
        if any(e.channel == Channel.coffee_event for e in registered):
            async with service.unit_of_work() as uow:
                await keep_appeals(uow.conn, registered)

    service.consumers.subscribe(subjects.IN_EVENT, handle_events, invalid="reject")
    service.consumers.subscribe(subjects.APPEAL_REGISTERED, handle_registered)
    service.background.append(gauge_refresher(ctx, refresh_s))


def set_gauges(f: ProgrammeFigures) -> None:
    """The gauges from one period's figures."""
    PROGRAMME_EVENTS.labels("main").set(f.events_main)
    PROGRAMME_EVENTS.labels("sub").set(f.events_sub)
    PROGRAMME_ENTERPRISES.set(f.enterprises)
    PROGRAMME_ATTENDANCES.labels("district_leader").set(f.district_leader_attendances)
    PROGRAMME_ATTENDANCES.labels("department_head").set(f.department_head_attendances)
    if f.unit_participation_rate is not None:
        PROGRAMME_UNIT_PARTICIPATION.set(f.unit_participation_rate)
    for kind, a in (("main", f.main), ("sub", f.sub), ("all", f.all)):
        for state in ("collected", "closed", "rated", "satisfied"):
            PROGRAMME_APPEALS.labels(kind, state).set(getattr(a, state))
        for gauge, value in ((PROGRAMME_CLOSURE_RATE, a.closure_rate), (PROGRAMME_SATISFACTION_RATE, a.satisfaction_rate)):
            if value is not None:
                gauge.labels(kind).set(value)
            else:
                try:
                    gauge.remove(kind)
                except KeyError:
                    pass


async def refresh_gauges(pool: asyncpg.Pool, ctx: Context) -> ProgrammeFigures:
    """Set the programme gauges to the calendar year to date (Asia/Shanghai); returns the figures."""
    today = clock.now().astimezone(SHANGHAI).date()
    async with pool.acquire() as conn:
        result = await figures(conn, ctx, today.replace(month=1, day=1), today)
    set_gauges(result)
    return result


def gauge_refresher(ctx: Context, period: float):
    """The background task setting the programme gauges for the year to date every ``period`` seconds."""

    async def refresh(service: Service) -> None:
        await refresh_gauges(service.pool, ctx)

    return every(period, refresh, name="refresh_programme_gauges", failure="programme gauges not refreshed", log=log)
