"""Escalation's SQL (schema ``escalation``): order facts, closures, ratings, firings, the evaluation counts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

import asyncpg

from services.escalation.domain import (
    DIFFICULT_KEY,
    AppealStep,
    Clock,
    ClosureKind,
    Firing,
    OrderFacts,
    OrderPlan,
    StepState,
)
from shared.contracts.events import ClockPause
from shared.db import each_key


class Closure(NamedTuple):
    """A ``closures`` row: an appeal closed (办结) or merged, which stops its orders' clocks."""

    event_id: str
    appeal_id: str
    kind: ClosureKind
    closed_at: datetime
    outcome: str | None


class Rating(NamedTuple):
    """A ``ratings`` row: one unit rated by one event (the closure's outcome, or unsatisfied by a reopening)."""

    event_id: str
    unit_code: str
    appeal_id: str
    rating: str
    source: str
    rated_at: datetime


@dataclass(frozen=True)
class DueStep:
    """A pending ladder step claimed by the scanner (a ``firings`` row)."""

    firing_id: int
    order_id: str
    appeal_id: str
    unit_code: str
    clock: Clock
    level: str
    step_key: str
    due_at: datetime | None
    fire_at: datetime
    requested_reason: str | None = None  # the unit's reason, for a ``difficult`` step

# --- locks --------------------------------------------------------------


async def lock_appeals(conn: asyncpg.Connection, appeal_ids: Iterable[str]) -> None:
    """Serialise the handling of each appeal's events across consumers and replicas (until commit).

    Events of one appeal arrive on several consumers at once; each transaction
    reads an order's facts and firings, then writes them, so two of them on
    the same appeal must not interleave. Locks are taken in one global order,
    so two transactions never wait for each other in a cycle.
    """
    keys = sorted(set(appeal_ids))
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM ("
            " SELECT DISTINCT hashtextextended('coffeetime.escalation.appeal:' || a, 0) AS h"
            " FROM unnest($1::text[]) AS a ORDER BY h) AS ordered",
            keys,
        )


_FACT_COLUMNS = (
    "order_id", "appeal_id", "unit_code", "unit", "role", "category", "urgent", "summary", "source_ref",
    "correlation_id", "received_at", "dispatched_at", "deadline_days", "sign_hours", "policy", "reopen_count",
    "extension_days", "signed_at", "returned_at", "return_accepted_at", "replied_at", "reopened_at", "difficult_at",
    "replaces_order_id", "pauses",
)
_PLAN_COLUMNS = ("sign_due", "handling_due", "sign_due_published", "handling_due_published", "unit_due",
                 "unit_due_published")
_ALL_COLUMNS = _FACT_COLUMNS + _PLAN_COLUMNS

#: Each column's type, for the arrays one statement unnests (a batch's orders in one INSERT, not one each);
#: text unless named. The jsonb columns travel as JSON text (an array of lists would be read as a
#: multi-dimensional array) and are cast in the statement.
_JSONB_COLUMNS = frozenset({"policy", "pauses"})
_COLUMN_TYPES = {
    "urgent": "boolean", "received_at": "timestamptz", "dispatched_at": "timestamptz", "deadline_days": "integer",
    "sign_hours": "double precision", "reopen_count": "integer", "extension_days": "integer",
    "signed_at": "timestamptz", "returned_at": "timestamptz", "return_accepted_at": "timestamptz",
    "replied_at": "timestamptz", "reopened_at": "timestamptz", "difficult_at": "timestamptz",
    "sign_due": "timestamptz", "handling_due": "timestamptz", "sign_due_published": "timestamptz",
    "handling_due_published": "timestamptz", "unit_due": "timestamptz", "unit_due_published": "timestamptz",
}

_UPSERT_ORDERS = (
    f"INSERT INTO orders ({', '.join(_ALL_COLUMNS)}, updated_at) "
    f"SELECT {', '.join(f'{c}::jsonb' if c in _JSONB_COLUMNS else c for c in _ALL_COLUMNS)}, now() FROM unnest("
    + ", ".join(f"${i}::{_COLUMN_TYPES.get(c, 'text')}[]" for i, c in enumerate(_ALL_COLUMNS, 1))
    + f") WITH ORDINALITY AS s({', '.join(_ALL_COLUMNS)}, n) ORDER BY n "
    "ON CONFLICT (order_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _ALL_COLUMNS[1:])
    + ", updated_at = now()"
)
"""The upsert of a batch's orders: one statement over arrays (one per column), rows in the order given.

One ``INSERT ... SELECT FROM unnest`` instead of ``executemany`` (one
execution per order): the same rows, one plan and one executor run per batch.
"""


_LOAD_ORDERS = each_key("orders", "order_id", ", ".join(_ALL_COLUMNS))
_ORDERS_OF_APPEALS = each_key("orders", "appeal_id", "order_id")


def _facts(row: asyncpg.Record) -> OrderFacts:
    values = {c: row[c] for c in _FACT_COLUMNS}
    values["pauses"] = tuple(ClockPause.model_validate(p) for p in values["pauses"] or ())
    return OrderFacts(**values)


async def load_orders(conn: asyncpg.Connection, order_ids: Iterable[str]
                      ) -> dict[str, tuple[OrderFacts, dict[Clock, datetime | None]]]:
    """The stored facts of these orders (without the appeal's closures) and the deadlines last published."""
    rows = await conn.fetch(_LOAD_ORDERS, list(set(order_ids)))
    return {
        r["order_id"]: (_facts(r), {"sign_for": r["sign_due_published"], "handling": r["handling_due_published"],
                                    "unit": r["unit_due_published"]})
        for r in rows
    }


async def orders_of_appeals(conn: asyncpg.Connection, appeal_ids: Iterable[str]) -> list[str]:
    """The ids of every stored order of these appeals."""
    rows = await conn.fetch(_ORDERS_OF_APPEALS, list(set(appeal_ids)))
    return [r["order_id"] for r in rows]


def _json(value) -> str | None:
    """A jsonb value as the pool's codec writes it (:mod:`shared.db`); ``None`` stays SQL NULL."""
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


async def save_orders(conn: asyncpg.Connection,
                      orders: Sequence[tuple[OrderFacts, OrderPlan, dict[Clock, datetime | None]]]) -> None:
    """Write each order's merged facts, its deadlines and the deadlines published (sorted: a stable lock order).

    An order appears once in ``orders`` (one statement cannot update a row twice).
    """
    if not orders:
        return
    ordered = sorted(orders, key=lambda o: o[0].order_id)
    columns: list[list] = [[getattr(facts, c) for facts, _, _ in ordered] for c in _FACT_COLUMNS if c != "pauses"]
    columns[_FACT_COLUMNS.index("policy")] = [_json(facts.policy) for facts, _, _ in ordered]
    columns.append([_json([p.model_dump(mode="json") for p in facts.pauses]) for facts, _, _ in ordered])
    columns += [[plan.sign_due for _, plan, _ in ordered], [plan.handling_due for _, plan, _ in ordered],
                [published.get("sign_for") for _, _, published in ordered],
                [published.get("handling") for _, _, published in ordered],
                [plan.unit_due for _, plan, _ in ordered], [published.get("unit") for _, _, published in ordered]]
    await conn.execute(_UPSERT_ORDERS, *columns)


# --- closures and ratings -----------------------------------------------------------


async def add_closures(conn: asyncpg.Connection, closures: Sequence[Closure]) -> None:
    """Store closures; a repeated event is stored once."""
    if closures:
        await conn.executemany(
            "INSERT INTO closures (event_id, appeal_id, kind, closed_at, outcome) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (event_id) DO NOTHING",
            closures,
        )


_CLOSURES_OF = each_key("closures", "appeal_id", "appeal_id, closed_at, kind")


async def closures_of(conn: asyncpg.Connection, appeal_ids: Iterable[str]
                      ) -> dict[str, list[tuple[datetime, ClosureKind]]]:
    """Each appeal's closures as (closed_at, kind)."""
    rows = await conn.fetch(_CLOSURES_OF, list(set(appeal_ids)))
    out: dict[str, list[tuple[datetime, ClosureKind]]] = {}
    for r in rows:
        out.setdefault(r["appeal_id"], []).append((r["closed_at"], r["kind"]))
    return out


async def add_ratings(conn: asyncpg.Connection, ratings: Sequence[Rating]) -> None:
    """Store ratings; a repeated event is stored once per unit."""
    if ratings:
        await conn.executemany(
            "INSERT INTO ratings (event_id, unit_code, appeal_id, rating, source, rated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, unit_code) DO NOTHING",
            ratings,
        )


# --- firings --------------------------------------------------------------------------


_FIRING_STATES = each_key(
    "firings", "order_id", "order_id, step_key, fired_at IS NOT NULL AS fired, cancelled_at IS NOT NULL AS cancelled")


async def firing_states(conn: asyncpg.Connection, order_ids: Iterable[str]) -> dict[str, dict[str, StepState]]:
    """Every stored step of these orders: order_id → step_key → pending, fired or cancelled."""
    rows = await conn.fetch(_FIRING_STATES, list(set(order_ids)))
    out: dict[str, dict[str, StepState]] = {}
    for r in rows:
        state: StepState = "fired" if r["fired"] else "cancelled" if r["cancelled"] else "pending"
        out.setdefault(r["order_id"], {})[r["step_key"]] = state
    return out


_ADD_FIRINGS = """
INSERT INTO firings (order_id, appeal_id, unit_code, clock, level, step_key, due_at, fire_at, planned_at)
SELECT o, a, u, c, l, k, d, f, $9
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
            $8::timestamptz[]) WITH ORDINALITY AS s(o, a, u, c, l, k, d, f, n)
ORDER BY n
ON CONFLICT ON CONSTRAINT firings_once DO NOTHING
"""
"""A batch's planned steps in one statement over arrays (not one execution per step), in the order given."""


async def add_firings(conn: asyncpg.Connection, steps: Sequence[tuple[OrderFacts, Firing]], now: datetime) -> None:
    """Plan ladder steps; a step already stored (same order and key) stays as it is."""
    if steps:
        await conn.execute(
            _ADD_FIRINGS, [o.order_id for o, _ in steps], [o.appeal_id for o, _ in steps],
            [o.unit_code for o, _ in steps], [f.clock for _, f in steps], [f.level for _, f in steps],
            [f.key for _, f in steps], [f.due_at for _, f in steps], [f.fire_at for _, f in steps], now,
        )


async def add_difficult(conn: asyncpg.Connection, requests: Sequence[tuple[OrderFacts, datetime | None, str]],
                        now: datetime) -> None:
    """The unit's escalation requests: a ``difficult`` step firing at once, once per order.

    (facts, handling deadline or None, the unit's reason) per order.
    """
    if requests:
        await conn.executemany(
            "INSERT INTO firings (order_id, appeal_id, unit_code, clock, level, step_key, due_at, fire_at,"
            " planned_at, payload) VALUES ($1, $2, $3, 'handling', 'difficult', $4, $5, $6, $6, $7)"
            " ON CONFLICT ON CONSTRAINT firings_once DO NOTHING",
            [(o.order_id, o.appeal_id, o.unit_code, DIFFICULT_KEY, due, now, {"reason": reason})
             for o, due, reason in requests],
        )


CANCEL_FIRING = (
    "UPDATE firings SET cancelled_at = $1 WHERE order_id = $2 AND step_key = $3"
    " AND coalesce(fired_at, cancelled_at) IS NULL"
)
"""One step cancelled unless fired or cancelled before, found by its unique key (``firings_once``).

Row by row, not one ``UPDATE ... FROM unnest``: for a join PostgreSQL picks
the plan from the table's statistics, and with those of a table that grew from
empty it walks every pending step for each key (1.2 s for 190 keys on 60,000
steps). ``coalesce(fired_at, cancelled_at) IS NULL`` (the same test as
``fired_at IS NULL AND cancelled_at IS NULL``) keeps the planner off the
``firings_pending`` index, whose predicate that form would match.
"""


async def cancel_firings(conn: asyncpg.Connection, steps: Sequence[tuple[str, str]], now: datetime) -> None:
    """Cancel these pending (order_id, step_key) steps; a step fired meanwhile stays fired."""
    if steps:
        await conn.executemany(CANCEL_FIRING, [(now, order_id, key) for order_id, key in steps])


CLAIM_DUE_FIRINGS = """
SELECT firing_id, order_id, appeal_id, unit_code, clock, level, step_key, due_at, fire_at, payload
FROM firings
WHERE fired_at IS NULL AND cancelled_at IS NULL AND fire_at <= $1
ORDER BY fire_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
"""The scanner's claim: the due steps no other replica holds, oldest first.

Its plan with 50 000 steps waiting in the future and none due
(``EXPLAIN (ANALYZE, BUFFERS)``, PostgreSQL 16; checked by
tests/integration/test_escalation.py)::

    Limit (actual rows=0 loops=1)
      Buffers: shared hit=2
      ->  LockRows (actual rows=0 loops=1)
            Buffers: shared hit=2
            ->  Index Scan using firings_pending on firings (actual rows=0 loops=1)
                  Index Cond: (fire_at <= '2025-12-31 16:00:00+00'::timestamp with time zone)
                  Filter: ((fired_at IS NULL) AND (cancelled_at IS NULL))
                  Buffers: shared hit=2

The partial index ``firings_pending ON firings (fire_at) WHERE fired_at IS NULL
AND cancelled_at IS NULL`` holds only the steps still waiting, in time order:
the scan stops at the first step not yet due, so a round reads the due rows
(two index pages here), whatever the number of open orders and of steps fired
or cancelled long ago. The Filter is the index predicate, rechecked on the rows
that get locked.
"""


async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[DueStep]:
    """Lock up to ``limit`` due steps for this transaction; rows locked by another replica are skipped."""
    return [DueStep(firing_id=r["firing_id"], order_id=r["order_id"], appeal_id=r["appeal_id"],
                    unit_code=r["unit_code"], clock=r["clock"], level=r["level"], step_key=r["step_key"],
                    due_at=r["due_at"], fire_at=r["fire_at"], requested_reason=(r["payload"] or {}).get("reason"))
            for r in await conn.fetch(CLAIM_DUE_FIRINGS, now, limit)]


MARK_FIRED = "UPDATE firings SET fired_at = $1, fired_by = $2, event_id = $4 WHERE firing_id = $3"
"""One step fired, by its primary key (row by row for the reason given at :data:`CANCEL_FIRING`)."""


async def mark_fired(conn: asyncpg.Connection, fired: Sequence[tuple[int, str]], now: datetime, replica: str) -> None:
    """(firing_id, event_id) of the steps whose events were staged in this transaction."""
    if fired:
        await conn.executemany(MARK_FIRED, [(now, replica, firing_id, event_id) for firing_id, event_id in fired])


# --- steps heard once per appeal ----------------------------------------------------------

_ANNOUNCE_APPEAL_STEPS = """
INSERT INTO appeal_escalations (appeal_id, round, level, event_id, late_orders, fired_at, fired_by)
SELECT a, r, l, e, o::jsonb, $6, $7
FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[]) AS s(a, r, l, e, o)
ORDER BY a, r, l
ON CONFLICT ON CONSTRAINT appeal_escalations_once DO NOTHING
RETURNING appeal_id, round, level
"""


async def announce_appeal_steps(conn: asyncpg.Connection, steps: Sequence[tuple[AppealStep, str, str]],
                                now: datetime, replica: str) -> set[AppealStep]:
    """Record appeal steps as (step, event id, late orders as JSON); returns those recorded now, not before.

    A step recorded before (or by another replica meanwhile: the insert waits
    for that transaction, then finds its row) is not returned, so it is not
    announced again. Rows go in key order, so two replicas recording
    overlapping steps wait for each other in one order, never in a cycle.
    """
    if not steps:
        return set()
    rows = await conn.fetch(
        _ANNOUNCE_APPEAL_STEPS, [s.appeal_id for s, _, _ in steps], [s.round for s, _, _ in steps],
        [s.level for s, _, _ in steps], [e for _, e, _ in steps], [o for _, _, o in steps], now, replica,
    )
    return {AppealStep(r["appeal_id"], r["round"], r["level"]) for r in rows}


# --- evaluation ---------------------------------------------------------------------------

# Each order with the appeal's closure that ended it (the first at or after its dispatch).
_ORDERS_WITH_CLOSURE = """
SELECT o.*,
       (SELECT min(c.closed_at) FROM closures c
         WHERE c.appeal_id = o.appeal_id AND c.kind = 'closed' AND c.closed_at >= o.dispatched_at) AS closed_at,
       (SELECT min(c.closed_at) FROM closures c
         WHERE c.appeal_id = o.appeal_id AND c.kind = 'merged' AND c.closed_at >= o.dispatched_at) AS merged_at
FROM orders o
WHERE o.dispatched_at IS NOT NULL
"""

# A unit is on time, or late, by its own clock: a re-dispatched order's from its sign-for (unit_due), any
# other order's handling clock (the appeal's). Which orders are due in the month follows the appeal's clock.
UNIT_MONTH_STATS = f"""
WITH o AS (SELECT *, coalesce(unit_due, handling_due) AS own_due FROM ({_ORDERS_WITH_CLOSURE}
    AND o.dispatched_at < $2
    AND (o.dispatched_at >= $1 OR o.handling_due >= $1 OR o.replied_at >= $1 OR o.returned_at >= $1)) AS w),
received AS (
    SELECT unit_code, count(*) AS received,
           count(*) FILTER (WHERE signed_at <= sign_due) AS signed_on_time
    FROM o WHERE dispatched_at >= $1 AND dispatched_at < $2 GROUP BY unit_code
),
due AS (
    SELECT unit_code, count(*) AS due,
           count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed,
           count(*) FILTER (WHERE closed_at IS NOT NULL
                            AND coalesce(replied_at, closed_at) <= own_due) AS closed_on_time,
           count(*) FILTER (WHERE coalesce(replied_at, closed_at, merged_at) > own_due
                            OR (coalesce(replied_at, closed_at, merged_at) IS NULL AND own_due < $3)) AS overdue
    FROM o WHERE return_accepted_at IS NULL AND handling_due >= $1 AND handling_due < $2 GROUP BY unit_code
),
replied AS (
    SELECT unit_code, count(*) AS replied FROM o WHERE replied_at >= $1 AND replied_at < $2 GROUP BY unit_code
),
returned AS (
    SELECT unit_code, count(*) AS returned FROM o WHERE returned_at >= $1 AND returned_at < $2 GROUP BY unit_code
),
rated AS (
    SELECT unit_code, count(*) AS rated,
           count(*) FILTER (WHERE rating = 'satisfied') AS satisfied,
           count(*) FILTER (WHERE rating = 'basically_satisfied') AS basically_satisfied,
           count(*) FILTER (WHERE source = 'reopened') AS reopened
    FROM ratings WHERE rated_at >= $1 AND rated_at < $2 GROUP BY unit_code
),
noticed AS (
    SELECT unit_code, count(*) AS noticed FROM firings
    WHERE level = 'supervision' AND fired_at >= $1 AND fired_at < $2 GROUP BY unit_code
),
units AS (
    SELECT unit_code FROM received UNION SELECT unit_code FROM due UNION SELECT unit_code FROM replied
    UNION SELECT unit_code FROM returned UNION SELECT unit_code FROM rated UNION SELECT unit_code FROM noticed
)
SELECT u.unit_code,
       coalesce(received.received, 0) AS received, coalesce(received.signed_on_time, 0) AS signed_on_time,
       coalesce(due.due, 0) AS due, coalesce(due.closed, 0) AS closed,
       coalesce(due.closed_on_time, 0) AS closed_on_time, coalesce(replied.replied, 0) AS replied,
       coalesce(rated.rated, 0) AS rated, coalesce(rated.satisfied, 0) AS satisfied,
       coalesce(rated.basically_satisfied, 0) AS basically_satisfied,
       coalesce(returned.returned, 0) AS returned, coalesce(rated.reopened, 0) AS reopened,
       coalesce(due.overdue, 0) AS overdue, coalesce(noticed.noticed, 0) AS noticed
FROM units u
LEFT JOIN received USING (unit_code) LEFT JOIN due USING (unit_code) LEFT JOIN replied USING (unit_code)
LEFT JOIN returned USING (unit_code) LEFT JOIN rated USING (unit_code) LEFT JOIN noticed USING (unit_code)
ORDER BY u.unit_code
"""


async def unit_month_counts(conn: asyncpg.Connection, start: datetime, end: datetime, now: datetime) -> list[dict]:
    """Each unit's counts for the month [start, end) (see ``domain.UnitMonthStats``); ``now`` decides what is overdue."""
    return [dict(r) for r in await conn.fetch(UNIT_MONTH_STATS, start, end, now)]


async def open_work_by_unit(conn: asyncpg.Connection, now: datetime) -> list[asyncpg.Record]:
    """Per unit: orders whose handling clock runs (open), and of those the ones past their deadline."""
    return await conn.fetch(
        f"""
        WITH o AS ({_ORDERS_WITH_CLOSURE} AND o.replied_at IS NULL AND o.return_accepted_at IS NULL)
        SELECT unit_code, count(*) AS open, count(*) FILTER (WHERE handling_due < $1) AS overdue
        FROM o
        WHERE closed_at IS NULL AND merged_at IS NULL
        GROUP BY unit_code ORDER BY unit_code
        """,
        now,
    )


async def noticed_in(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """Orders reported to the supervision office (通报) in [start, end), oldest first."""
    return await conn.fetch(
        """
        SELECT f.appeal_id, f.order_id, f.unit_code, o.unit, o.summary, f.due_at, f.level, f.fired_at
        FROM firings f JOIN orders o USING (order_id)
        WHERE f.level = 'supervision' AND f.fired_at >= $1 AND f.fired_at < $2
        ORDER BY f.fired_at
        """,
        start, end,
    )


# --- the loaded State Council years -------------------------------------------------------

CALENDAR_SIGNATURE = (
    "SELECT coalesce(string_agg(year::text || ':' || digest, ',' ORDER BY year), '') FROM calendar_years"
)
"""Which schedules are loaded, as one short string: a replica compares it with the one its calendar was built from."""


async def calendar_signature(conn: asyncpg.Connection) -> str:
    """(year, digest) of every loaded year; changes when a year is loaded, replaced or removed."""
    return await conn.fetchval(CALENDAR_SIGNATURE)


async def calendar_years(conn: asyncpg.Connection, year: int | None = None) -> list[asyncpg.Record]:
    """The loaded years (or the one ``year``): year, document, digest, source, loaded_at, loaded_by."""
    return await conn.fetch(
        "SELECT year, document, digest, source, loaded_at, loaded_by FROM calendar_years"
        " WHERE $1::int IS NULL OR year = $1 ORDER BY year", year)


async def save_calendar_year(conn: asyncpg.Connection, year: int, document: dict, digest: str, source: str,
                             now: datetime, by: str) -> str:
    """Store a checked year whole (one row), and the load in ``calendar_loads``: loaded, replaced or unchanged."""
    before = await conn.fetchval("SELECT digest FROM calendar_years WHERE year = $1 FOR UPDATE", year)
    outcome = "unchanged" if before == digest else "replaced" if before is not None else "loaded"
    if outcome != "unchanged":
        await conn.execute(
            "INSERT INTO calendar_years (year, document, digest, source, loaded_at, loaded_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (year) DO UPDATE SET document = EXCLUDED.document,"
            " digest = EXCLUDED.digest, source = EXCLUDED.source, loaded_at = EXCLUDED.loaded_at,"
            " loaded_by = EXCLUDED.loaded_by",
            year, document, digest, source, now, by)
    await conn.execute("INSERT INTO calendar_loads (year, digest, outcome, loaded_at, loaded_by)"
                       " VALUES ($1, $2, $3, $4, $5)", year, digest, outcome, now, by)
    return outcome


async def running_orders(conn: asyncpg.Connection, after: str, limit: int) -> list[str]:
    """Ids of dispatched orders not replied to nor returned for good, after ``after`` in id order (a page).

    The appeal's closure is checked by the caller (it stops the clocks too).
    """
    rows = await conn.fetch(
        "SELECT order_id FROM orders WHERE dispatched_at IS NOT NULL AND replied_at IS NULL"
        " AND return_accepted_at IS NULL AND order_id > $1 ORDER BY order_id LIMIT $2", after, limit)
    return [r["order_id"] for r in rows]


async def open_deadlines(conn: asyncpg.Connection, today: date) -> list[asyncpg.Record]:
    """Open orders' handling deadlines, counted per unit, year and day (``days_ahead`` from ``today``, Asia/Shanghai)."""
    return await conn.fetch(
        f"""
        WITH o AS ({_ORDERS_WITH_CLOSURE} AND o.replied_at IS NULL AND o.return_accepted_at IS NULL)
        SELECT unit_code,
               extract(year FROM handling_due AT TIME ZONE 'Asia/Shanghai')::int AS year,
               (handling_due AT TIME ZONE 'Asia/Shanghai')::date - $1::date AS days_ahead,
               count(*) AS n
        FROM o
        WHERE closed_at IS NULL AND merged_at IS NULL AND handling_due IS NOT NULL
        GROUP BY 1, 2, 3
        """,
        today,
    )
