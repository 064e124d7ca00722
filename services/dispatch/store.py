"""Dispatch's SQL (schema ``dispatch``): appeals and work orders as the domain's dataclasses."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime

import asyncpg

from services.dispatch.domain import AppealState, AppealStatus, OrderStatus, Role, WorkOrder
from shared.contracts.events import ClockPause

_APPEAL_FIELDS = [f.name for f in fields(AppealState)]
_ORDER_FIELDS = [f.name for f in fields(WorkOrder)]


def appeal_from_row(row: asyncpg.Record) -> AppealState:
    """An ``appeals`` row as the domain's :class:`AppealState`."""
    values = {k: row[k] for k in _APPEAL_FIELDS}
    values["status"] = AppealStatus(values["status"])
    values["unit_codes"] = tuple(values["unit_codes"])
    return AppealState(**values)


def order_from_row(row: asyncpg.Record) -> WorkOrder:
    """An ``orders`` row as the domain's :class:`WorkOrder`."""
    values = {k: row[k] for k in _ORDER_FIELDS}
    values["status"] = OrderStatus(values["status"])
    values["role"] = Role(values["role"])
    values["pauses"] = tuple(ClockPause.model_validate(p) for p in values["pauses"] or ())
    return WorkOrder(**values)


def _appeal_values(a: AppealState) -> list:
    # getattr, not asdict: asdict deep-copies every value (the pauses' pydantic models too), a tenth of dispatch's
    # handler time in the profile; the values only become query parameters
    d = {k: getattr(a, k) for k in _APPEAL_FIELDS}
    d["status"] = a.status.value
    d["unit_codes"] = list(a.unit_codes)
    return [d[k] for k in _APPEAL_FIELDS]


def _order_values(o: WorkOrder) -> list:
    d = {k: getattr(o, k) for k in _ORDER_FIELDS}
    d["status"] = o.status.value
    d["role"] = o.role.value
    d["pauses"] = [p.model_dump(mode="json") for p in o.pauses]
    return [d[k] for k in _ORDER_FIELDS]


_APPEAL_COLS = ", ".join(_APPEAL_FIELDS)
_APPEAL_PARAMS = ", ".join(f"${i + 1}" for i in range(len(_APPEAL_FIELDS)))
_APPEAL_UPDATE = ", ".join(f"{k} = EXCLUDED.{k}" for k in _APPEAL_FIELDS if k != "appeal_id")
_ORDER_COLS = ", ".join(_ORDER_FIELDS)
_ORDER_PARAMS = ", ".join(f"${i + 1}" for i in range(len(_ORDER_FIELDS)))
_ORDER_UPDATE = ", ".join(f"{k} = EXCLUDED.{k}" for k in _ORDER_FIELDS if k != "order_id")


async def insert_new_appeals(conn: asyncpg.Connection, appeals: list[tuple[AppealState, dict]]) -> set[str]:
    """Insert appeals seen for the first time (with their routing); returns the ids that were new."""
    if not appeals:
        return set()
    cols = list(zip(*[_appeal_values(a) for a, _ in appeals], strict=True))
    types = {"received_at": "timestamptz", "deadline_days": "int", "sign_hours": "real", "urgent": "bool",
             "return_count": "int", "orders_issued": "int", "unit_codes": "text"}
    # unit_codes travels as a JSON text per row: unnest cannot take an array of arrays of varying length
    params = []
    selects = []
    for i, name in enumerate(_APPEAL_FIELDS):
        values = list(cols[i])
        if name == "unit_codes":
            values = [json.dumps(v) for v in values]
            selects.append(f"ARRAY(SELECT jsonb_array_elements_text(c{i}::jsonb))")
        else:
            selects.append(f"c{i}")
        params.append(values)
    params.append([json.dumps(r, ensure_ascii=False) for _, r in appeals])
    unnest = ", ".join(f"${i + 1}::{types.get(n, 'text')}[]" for i, n in enumerate(_APPEAL_FIELDS))
    n = len(_APPEAL_FIELDS)
    aliases = ", ".join(f"c{i}" for i in range(n)) + ", r"
    rows = await conn.fetch(
        f"INSERT INTO appeals ({_APPEAL_COLS}, routing) "
        f"SELECT {', '.join(selects)}, r::jsonb FROM unnest({unnest}, ${n + 1}::text[]) AS t({aliases}) "
        "ON CONFLICT (appeal_id) DO NOTHING RETURNING appeal_id",
        *params,
    )
    return {r["appeal_id"] for r in rows}


async def save_appeal(conn: asyncpg.Connection, appeal: AppealState) -> None:
    """Insert or update one appeal."""
    await conn.execute(
        f"INSERT INTO appeals ({_APPEAL_COLS}) VALUES ({_APPEAL_PARAMS}) "
        f"ON CONFLICT (appeal_id) DO UPDATE SET {_APPEAL_UPDATE}, updated_at = now()",
        *_appeal_values(appeal),
    )


async def save_orders(conn: asyncpg.Connection, orders: list[WorkOrder], reasons: dict[str, list[str]] | None = None) -> None:
    """Insert or update orders; ``reasons`` (order id → why routed there) is kept for new orders."""
    if not orders:
        return
    reasons = reasons or {}
    await conn.executemany(
        f"INSERT INTO orders ({_ORDER_COLS}, reasons) VALUES ({_ORDER_PARAMS}, "
        f"coalesce(${len(_ORDER_FIELDS) + 1}::jsonb, '[]'::jsonb)) "
        f"ON CONFLICT (order_id) DO UPDATE SET {_ORDER_UPDATE}, "
        f"reasons = coalesce(${len(_ORDER_FIELDS) + 1}::jsonb, orders.reasons), updated_at = now()",
        [(*_order_values(o), reasons.get(o.order_id)) for o in orders],
    )


async def lock_appeal(conn: asyncpg.Connection, appeal_id: str) -> AppealState | None:
    """The appeal, locked for this transaction: actions on one appeal run one at a time."""
    row = await conn.fetchrow("SELECT * FROM appeals WHERE appeal_id = $1 FOR UPDATE", appeal_id)
    return appeal_from_row(row) if row else None


async def appeal_of_order(conn: asyncpg.Connection, order_id: str) -> str | None:
    """The appeal id of an order, or None for an unknown order."""
    return await conn.fetchval("SELECT appeal_id FROM orders WHERE order_id = $1", order_id)


async def load_order(conn: asyncpg.Connection, order_id: str) -> WorkOrder | None:
    """One order, or None."""
    row = await conn.fetchrow("SELECT * FROM orders WHERE order_id = $1", order_id)
    return order_from_row(row) if row else None


async def orders_of(conn: asyncpg.Connection, appeal_id: str) -> list[WorkOrder]:
    """Every order of an appeal, by id."""
    rows = await conn.fetch("SELECT * FROM orders WHERE appeal_id = $1 ORDER BY order_id", appeal_id)
    return [order_from_row(r) for r in rows]


async def rated_order(conn: asyncpg.Connection, appeal_id: str) -> WorkOrder | None:
    """The appeal's current lead order: the one the enterprise rates."""
    row = await conn.fetchrow(
        "SELECT * FROM orders WHERE appeal_id = $1 AND role = 'lead' ORDER BY order_id DESC LIMIT 1", appeal_id)
    return order_from_row(row) if row else None


_DEADLINE_COLUMNS = (("sign_for", "sign_due"), ("handling", "due"), ("unit", "unit_due"))
"""Each clock of ``ct.deadline.set`` and the columns of ``orders`` that keep it (``<column>_at``, ``<column>_set_at``)."""


def _newer(column: str, n: int) -> str:
    """The SQL condition: the batch has a deadline for ``column`` (parameters n, n+1) newer than the stored one."""
    return f"(v.set{n} IS NOT NULL AND (o.{column}_set_at IS NULL OR o.{column}_set_at <= v.set{n}))"


_RECORD_DEADLINES = (
    "UPDATE orders o SET "
    + ", ".join(
        f"{column}_at = CASE WHEN {_newer(column, n)} THEN v.due{n} ELSE o.{column}_at END, "
        f"{column}_set_at = CASE WHEN {_newer(column, n)} THEN v.set{n} ELSE o.{column}_set_at END"
        for n, (_, column) in enumerate(_DEADLINE_COLUMNS))
    + " FROM unnest($1::text[], "
    + ", ".join(f"${2 + 2 * n}::timestamptz[], ${3 + 2 * n}::timestamptz[]" for n in range(len(_DEADLINE_COLUMNS)))
    + ") AS v(order_id, " + ", ".join(f"due{n}, set{n}" for n in range(len(_DEADLINE_COLUMNS))) + ")"
    + " WHERE o.order_id = v.order_id AND ("
    + " OR ".join(_newer(column, n) for n, (_, column) in enumerate(_DEADLINE_COLUMNS)) + ")"
)


async def record_deadlines(conn: asyncpg.Connection, deadlines: list[tuple[str, str, datetime, datetime]]) -> None:
    """(order_id, clock, due_at, set_at) from ``ct.deadline.set``: each kept unless a newer one was applied.

    One statement for the batch, one new row version per order whatever clocks it
    brings (an order's sign-for, handling and unit deadlines come together: three
    versions of each order row before, issue 12).
    """
    clocks = {clock: n for n, (clock, _) in enumerate(_DEADLINE_COLUMNS)}
    latest: dict[str, list[tuple[datetime, datetime] | None]] = {}
    for order_id, c, due_at, set_at in deadlines:
        n = clocks.get(c)
        if n is None:
            continue
        slots = latest.setdefault(order_id, [None] * len(_DEADLINE_COLUMNS))
        if slots[n] is None or slots[n][1] <= set_at:
            slots[n] = (due_at, set_at)
    if not latest:
        return
    columns: list[list] = [list(latest)]
    for n in range(len(_DEADLINE_COLUMNS)):
        columns.append([s[n][0] if s[n] else None for s in latest.values()])
        columns.append([s[n][1] if s[n] else None for s in latest.values()])
    await conn.execute(_RECORD_DEADLINES, *columns)


async def record_escalations(conn: asyncpg.Connection, levels: list[tuple[str, str]]) -> None:
    """(order_id, level) from ``ct.appeal.escalated``: the step each order reached."""
    await conn.executemany("UPDATE orders SET escalation_level = $2 WHERE order_id = $1", levels)


ORDER_POSITION = ("late", "due", "order_id")
"""The keyset of :func:`list_orders`: overdue first (``late`` 0), then the deadline (none last), then the id."""


async def list_orders(conn: asyncpg.Connection, unit_code: str | None, status: str | None, as_of: datetime,
                      limit: int = 50, order_id: str | None = None,
                      after: tuple[int, str, str] | None = None, paused: bool | None = None) -> list[asyncpg.Record]:
    """Orders of one unit (or all, for the lead unit), overdue first, then by deadline, then by id.

    ``paused``: only the orders whose clock is paused (待补充材料), or only the others.

    ``overdue`` is reckoned at ``as_of`` (the time of a list's first page, so that
    its pages keep one order); each row carries its keyset position (:data:`ORDER_POSITION`):
    ``late`` (0 overdue, 1 not), ``due`` (the deadline as PostgreSQL's text,
    ``infinity`` when none) and ``order_id``; ``after`` is the position of the
    previous page's last row.
    """
    late, due, last_id = after or (None, None, None)
    return await conn.fetch(
        """
        SELECT * FROM (
            SELECT o.*, a.summary, a.enterprise_name, a.category, a.received_at,
                   coalesce(o.status IN ('dispatched', 'signed', 'returned') AND o.due_at < $3, false) AS overdue,
                   CASE WHEN o.status IN ('dispatched', 'signed', 'returned') AND o.due_at < $3 THEN 0 ELSE 1 END
                       AS late,  -- no deadline known yet: not overdue
                   coalesce(o.due_at, 'infinity'::timestamptz) AS due_key,
                   coalesce(o.due_at, 'infinity'::timestamptz)::text AS due
            FROM orders o JOIN appeals a USING (appeal_id)
            WHERE ($1::text IS NULL OR o.unit_code = $1) AND ($2::text IS NULL OR o.status = $2)
              AND ($5::text IS NULL OR o.order_id = $5)
              AND ($9::bool IS NULL OR (o.paused_at IS NOT NULL) = $9)
        ) v
        WHERE $6::int IS NULL OR (v.late, v.due_key, v.order_id) > ($6::int, $7::text::timestamptz, $8::text)
        ORDER BY v.late, v.due_key, v.order_id
        LIMIT $4
        """,
        unit_code, status, as_of, limit, order_id, late, due, last_id, paused,
    )


async def queued_appeals(conn: asyncpg.Connection, limit: int = 50,
                         after: tuple[datetime, str] | None = None) -> list[asyncpg.Record]:
    """Appeals waiting in the manual queue, the longest waiting first; ``after`` = (created_at, appeal_id)."""
    created, last_id = after or (None, None)
    return await conn.fetch(
        "SELECT appeal_id, summary, category, received_at, routing, created_at FROM appeals "
        "WHERE status = 'queued' AND ($2::timestamptz IS NULL OR (created_at, appeal_id) > ($2, $3::text)) "
        "ORDER BY created_at, appeal_id LIMIT $1", limit, created, last_id)


async def awaiting_rating_since(conn: asyncpg.Connection, cutoff: datetime, limit: int = 200) -> list[str]:
    """Appeals whose lead order was replied before ``cutoff`` and is still unrated."""
    rows = await conn.fetch(
        "SELECT appeal_id FROM orders WHERE status = 'replied' AND role = 'lead' AND replied_at < $1 "
        "ORDER BY replied_at LIMIT $2", cutoff, limit)
    return [r["appeal_id"] for r in rows]


# --- the routing model: texts, labelled examples, versions -------------------------------------

EXAMPLES_LOCK = 7_310_001
"""The advisory lock examples are inserted under: ids then become visible in commit order (see 003_routing_model.sql)."""


async def keep_texts(conn: asyncpg.Connection, texts: list[tuple[str, str]]) -> None:
    """(appeal_id, content) of appeals started now; a repeat keeps the first."""
    if texts:
        await conn.execute(
            "INSERT INTO appeal_texts (appeal_id, content) SELECT * FROM unnest($1::text[], $2::text[]) "
            "ON CONFLICT (appeal_id) DO NOTHING", [a for a, _ in texts], [c for _, c in texts])


async def text_of(conn: asyncpg.Connection, appeal_id: str) -> str | None:
    """The full content of an appeal, or None when dispatch never kept it (an appeal older than the table)."""
    return await conn.fetchval("SELECT content FROM appeal_texts WHERE appeal_id = $1", appeal_id)


async def add_example(conn: asyncpg.Connection, key: str, appeal_id: str | None, content: str, unit_code: str,
                      source: str, actor: str | None) -> int | None:
    """Store one labelled example once per ``key``; its id, or None when the key was stored before."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", EXAMPLES_LOCK)
    return await conn.fetchval(
        "INSERT INTO routing_examples (key, appeal_id, content, unit_code, source, actor) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING example_id",
        key, appeal_id, content, unit_code, source, actor)


async def last_example_id(conn: asyncpg.Connection) -> int:
    """The highest example id committed (0 when none)."""
    return await conn.fetchval("SELECT coalesce(max(example_id), 0) FROM routing_examples")


async def examples_up_to(conn: asyncpg.Connection, last: int) -> list[asyncpg.Record]:
    """Every stored example with an id up to ``last``, by id."""
    return await conn.fetch(
        "SELECT example_id, appeal_id, content, unit_code, source FROM routing_examples "
        "WHERE example_id <= $1 ORDER BY example_id", last)


async def record_version(conn: asyncpg.Connection, version: str, config_hash: str, last: int, examples: int,
                         training_ms: float) -> None:
    """Record a trained version (the first replica to train it records it; the others find it there)."""
    await conn.execute(
        "INSERT INTO routing_versions (version, config_hash, last_example_id, examples, training_ms) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (version) DO NOTHING",
        version, config_hash, last, examples, training_ms)


async def mark_routed(conn: asyncpg.Connection, versions: dict[str, str]) -> None:
    """order id → the routing model's version that routed it."""
    if versions:
        await conn.execute(
            "UPDATE orders o SET routing_version = v.version FROM unnest($1::text[], $2::text[]) AS v(order_id, version) "
            "WHERE o.order_id = v.order_id", list(versions), list(versions.values()))


# --- duplicates that follow their master ---------------------------------------------------------


async def add_followers(conn: asyncpg.Connection, rows: list[tuple[str, str, float | None, str]]) -> None:
    """(appeal_id, master_appeal_id, similarity, registration JSON) of followers; a split recorded first keeps
    its split and gains the registration."""
    if rows:
        await conn.execute(
            "INSERT INTO followers (appeal_id, master_appeal_id, similarity, registration) "
            "SELECT a, m, s, r::jsonb FROM unnest($1::text[], $2::text[], $3::real[], $4::text[]) AS t(a, m, s, r) "
            "ON CONFLICT (appeal_id) DO UPDATE SET registration = coalesce(followers.registration, EXCLUDED.registration), "
            "similarity = coalesce(followers.similarity, EXCLUDED.similarity)",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


async def split_before(conn: asyncpg.Connection, appeal_ids: list[str]) -> set[str]:
    """The appeals among ``appeal_ids`` already split (the split arrived before the registration)."""
    rows = await conn.fetch("SELECT appeal_id FROM followers WHERE appeal_id = ANY($1::text[]) AND split_at IS NOT NULL",
                            appeal_ids)
    return {r["appeal_id"] for r in rows}


async def lock_follower(conn: asyncpg.Connection, appeal_id: str) -> asyncpg.Record | None:
    """A follower row, locked for this transaction."""
    return await conn.fetchrow("SELECT * FROM followers WHERE appeal_id = $1 FOR UPDATE", appeal_id)


async def record_split(conn: asyncpg.Connection, appeal_id: str, master_appeal_id: str, at: datetime) -> bool:
    """Mark a follower split (or note the split of one not seen yet); False when it was split before."""
    result = await conn.execute(
        "INSERT INTO followers (appeal_id, master_appeal_id, split_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (appeal_id) DO UPDATE SET split_at = EXCLUDED.split_at WHERE followers.split_at IS NULL",
        appeal_id, master_appeal_id, at)
    return result.split()[-1] == "1"


async def followers_of(conn: asyncpg.Connection, master_appeal_id: str) -> list[str]:
    """The appeals that still follow ``master_appeal_id``, by id."""
    rows = await conn.fetch("SELECT appeal_id FROM followers WHERE master_appeal_id = $1 AND split_at IS NULL "
                            "ORDER BY appeal_id", master_appeal_id)
    return [r["appeal_id"] for r in rows]


async def mark_replied(conn: asyncpg.Connection, appeal_id: str, order_id: str, at: datetime) -> None:
    """The master's reply on ``order_id`` was sent to the follower."""
    await conn.execute("UPDATE followers SET replied_order_id = $2, replied_at = $3 WHERE appeal_id = $1",
                       appeal_id, order_id, at)


async def followers_awaiting_rating(conn: asyncpg.Connection, cutoff: datetime, limit: int = 200) -> list[str]:
    """Followers sent their master's reply before ``cutoff`` that are still open (the not-rated sweep)."""
    rows = await conn.fetch(
        "SELECT f.appeal_id FROM followers f JOIN appeals a USING (appeal_id) "
        "WHERE f.split_at IS NULL AND f.replied_at < $1 AND a.status = 'following' ORDER BY f.replied_at LIMIT $2",
        cutoff, limit)
    return [r["appeal_id"] for r in rows]


async def keep_routing(conn: asyncpg.Connection, appeal_id: str, routing: dict) -> None:
    """The routing record of an appeal routed after it was split."""
    await conn.execute("UPDATE appeals SET routing = $2::jsonb WHERE appeal_id = $1", appeal_id,
                       json.dumps(routing, ensure_ascii=False))
