"""What the console reads from dispatch's own schema (read only: every change goes through the use cases).

The lists the API has (``store.list_orders``, ``store.queued_appeals``) page with a
cursor; the console needs filters and search across the lead unit's whole
district instead, so it has its own ``SELECT`` s here, over the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

LIVE = ("dispatched", "signed", "returned")
"""Orders still with a unit (or waiting for the lead unit's decision on a return)."""
MAX_ROWS = 200
"""Rows a list shows at most (the page says so when there are more)."""


@dataclass(frozen=True)
class OrderFilter:
    """The filters of the orders list: each None means "any"."""

    unit_code: str | None = None
    status: str | None = None
    category: str | None = None
    due_from: datetime | None = None  # live orders due in [due_from, due_to)
    due_to: datetime | None = None
    overdue_at: datetime | None = None  # live orders past their deadline at this time
    paused: bool = False  # the unit paused the handling clock (待补充材料)
    returned: bool = False  # returned orders waiting for the lead unit (退单待审)
    pending_extension: bool = False
    search: str | None = None  # appeal id, order id, enterprise (part of the name), phone (part of the number)


_ORDER_COLUMNS = """
    o.order_id, o.appeal_id, o.unit_code, o.role, o.status, o.reopen_count, o.dispatched_at, o.signed_at,
    o.replied_at, o.closed_at, o.pending_extension_days, o.pending_extension_reason, o.extension_days_granted,
    o.return_reason, o.reply, o.resolved, o.due_at, o.sign_due_at, o.escalation_level, o.reasons, o.updated_at,
    o.paused_at, o.pause_reason, o.pauses, jsonb_array_length(o.pauses) AS paused_count,
    a.summary, a.enterprise_name, a.contact_phone, a.category, a.received_at, a.urgent
"""


async def orders(conn: asyncpg.Connection, f: OrderFilter, limit: int = MAX_ROWS) -> list[dict]:
    """Orders matching ``f``: overdue and nearest deadlines first (no deadline last), then the newest."""
    digits = "".join(c for c in (f.search or "") if c.isdigit())
    rows = await conn.fetch(
        f"""
        SELECT {_ORDER_COLUMNS}
        FROM orders o JOIN appeals a USING (appeal_id)
        WHERE ($1::text IS NULL OR o.unit_code = $1)
          AND ($2::text IS NULL OR o.status = $2)
          AND ($3::text IS NULL OR a.category = $3)
          AND ($4::timestamptz IS NULL OR (o.status = ANY($10::text[]) AND o.due_at >= $4 AND o.due_at < $5))
          AND ($6::timestamptz IS NULL OR (o.status IN ('dispatched', 'signed') AND o.due_at < $6))
          AND (NOT $7 OR o.paused_at IS NOT NULL)
          AND (NOT $8 OR o.pending_extension_days IS NOT NULL)
          AND ($9::text IS NULL OR o.appeal_id = $9 OR o.order_id = $9
               OR a.enterprise_name ILIKE '%' || $9 || '%'
               OR ($11::text <> '' AND length($11) >= 4 AND a.contact_phone LIKE '%' || $11 || '%'))
          AND (NOT $13 OR o.status = 'returned')
        ORDER BY o.status NOT IN ('dispatched', 'signed', 'returned'), o.due_at NULLS LAST, o.dispatched_at DESC,
                 o.order_id
        LIMIT $12
        """,
        f.unit_code, f.status, f.category, f.due_from, f.due_to, f.overdue_at, f.paused, f.pending_extension,
        (f.search or "").strip() or None, list(LIVE), digits, limit, f.returned)
    return [dict(r) for r in rows]


async def order(conn: asyncpg.Connection, order_id: str, unit_code: str | None) -> dict | None:
    """One order as the console shows it; ``unit_code`` (a unit's session) sees only its own."""
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS}, a.status AS appeal_status FROM orders o JOIN appeals a USING (appeal_id) "
        "WHERE o.order_id = $1 AND ($2::text IS NULL OR o.unit_code = $2)", order_id, unit_code)
    return dict(row) if row else None


async def orders_of_appeal(conn: asyncpg.Connection, appeal_id: str) -> list[dict]:
    """Every order of an appeal, oldest first (the history dispatch itself keeps)."""
    rows = await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN appeals a USING (appeal_id) WHERE o.appeal_id = $1 "
        "ORDER BY o.dispatched_at NULLS FIRST, o.order_id", appeal_id)
    return [dict(r) for r in rows]


async def queue(conn: asyncpg.Connection, limit: int = MAX_ROWS) -> list[dict]:
    """The manual queue, the longest waiting first (as ``GET /queue``), with the appeal's enterprise."""
    rows = await conn.fetch(
        "SELECT appeal_id, summary, category, received_at, routing, created_at, enterprise_name, urgent "
        "FROM appeals WHERE status = 'queued' ORDER BY created_at, appeal_id LIMIT $1", limit)
    return [dict(r) for r in rows]


async def counts(conn: asyncpg.Connection, unit_code: str | None, now: datetime) -> dict[str, int]:
    """Today's figures dispatch knows: live orders, overdue now, paused clocks, waiting decisions, the queue."""
    row = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE status IN ('dispatched', 'signed', 'returned')) AS live,
               count(*) FILTER (WHERE status IN ('dispatched', 'signed') AND due_at < $2) AS overdue,
               count(*) FILTER (WHERE status = 'dispatched') AS unsigned,
               count(*) FILTER (WHERE status = 'returned') AS returned,
               count(*) FILTER (WHERE paused_at IS NOT NULL) AS paused,
               count(*) FILTER (WHERE pending_extension_days IS NOT NULL) AS extensions,
               count(*) FILTER (WHERE status = 'replied') AS awaiting_rating,
               (SELECT count(*) FROM appeals WHERE status = 'queued' AND $1::text IS NULL) AS queued
        FROM orders WHERE $1::text IS NULL OR unit_code = $1
        """, unit_code, now)
    return {k: int(v) for k, v in dict(row).items()}


async def change_stamp(conn: asyncpg.Connection, unit_code: str | None) -> str:
    """A fingerprint of every order the session sees (and, for the lead unit, of the queue).

    A sum of per-row hashes, not ``max(updated_at)``: a transaction that commits
    after a later one keeps its earlier ``now()``, which a maximum would miss. A
    deadline or escalation noted from escalation changes it too, and so does a pause or a resume.
    """
    return await conn.fetchval(
        """
        SELECT count(*)::text || '.' || coalesce(sum(hashtextextended(
                   order_id || status || updated_at::text || coalesce(due_at::text, '')
                   || coalesce(escalation_level, '') || coalesce(pending_extension_days::text, '')
                   || coalesce(paused_at::text, ''), 0)), 0)::text
               || '.' || (SELECT coalesce(sum(hashtextextended(appeal_id || updated_at::text, 0)), 0)::text
                          FROM appeals WHERE status = 'queued' AND $1::text IS NULL)
        FROM orders WHERE $1::text IS NULL OR unit_code = $1
        """, unit_code)
