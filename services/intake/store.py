"""Intake's SQL (schema ``intake``)."""

from __future__ import annotations

import json

import asyncpg

from services.intake.domain import NewAppeal, TimelineEntry
from shared.contracts import EventRecord


async def register_appeals(conn: asyncpg.Connection, appeals: list[NewAppeal],
                           msg_ids: list[str | None]) -> dict[tuple[str, str], str]:
    """Insert the appeals not registered yet; returns {(channel, source_id): appeal_id} of the new ones."""
    if not appeals:
        return {}
    rows = await conn.fetch(
        """
        INSERT INTO appeals (channel, source_id, enterprise_name, enterprise_uscc, contact_name, contact_phone,
                             content, title, category_hint, address, kind, urgent, received_at, proposal, msg_id)
        SELECT c, s, en, eu, cn, cp, ct, ti, ch, ad, k, u, r, p::jsonb, m
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[], $9::text[], $10::text[], $11::text[], $12::bool[], $13::timestamptz[],
                    $14::text[], $15::text[])
             AS t(c, s, en, eu, cn, cp, ct, ti, ch, ad, k, u, r, p, m)
        ON CONFLICT ON CONSTRAINT appeals_once_per_source DO NOTHING
        RETURNING channel, source_id, appeal_id
        """,
        [a.channel.value for a in appeals], [a.source_id for a in appeals],
        [a.enterprise_name for a in appeals], [a.enterprise_uscc for a in appeals],
        [a.contact_name for a in appeals], [a.contact_phone for a in appeals],
        [a.content for a in appeals], [a.title for a in appeals], [a.category_hint for a in appeals],
        [a.address for a in appeals], [a.kind.value for a in appeals], [a.urgent for a in appeals],
        [a.received_at for a in appeals],
        [a.proposal.model_dump_json() if a.proposal else None for a in appeals], msg_ids,
    )
    return {(r["channel"], r["source_id"]): r["appeal_id"] for r in rows}


async def save_coffee_event(conn: asyncpg.Connection, record: EventRecord) -> None:
    await conn.execute(
        """
        INSERT INTO coffee_events (event_id, kind, event_date, organizer_unit, theme, attendees, items)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING
        """,
        record.event_id, record.kind.value, record.date, record.organizer_unit, record.theme,
        record.attendees, [json.loads(i.model_dump_json()) for i in record.items],
    )


async def first_time(conn: asyncpg.Connection, consumer: str, keys: list[str]) -> set[str]:
    """Record ``keys`` as handled by ``consumer``; returns those not seen before."""
    if not keys:
        return set()
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, key) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING key",
        consumer, keys,
    )
    return {r["key"] for r in rows}


async def add_timeline(conn: asyncpg.Connection, entries: list[TimelineEntry]) -> int:
    if not entries:
        return 0
    result = await conn.execute(
        """
        INSERT INTO timeline (event_id, appeal_id, subject, occurred_at, actor, what, payload)
        SELECT e, a, s, o, ac, w, p::jsonb
        FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[])
             AS t(e, a, s, o, ac, w, p)
        ON CONFLICT (event_id) DO NOTHING
        """,
        [e.event_id for e in entries], [e.appeal_id for e in entries], [e.subject for e in entries],
        [e.occurred_at for e in entries], [e.actor for e in entries], [e.what for e in entries],
        [json.dumps(e.payload, ensure_ascii=False) for e in entries],
    )
    return int(result.split()[-1])


async def find_appeal(conn: asyncpg.Connection, appeal_id: str | None = None, channel: str | None = None,
                      source_id: str | None = None) -> asyncpg.Record | None:
    if appeal_id:
        return await conn.fetchrow("SELECT * FROM appeals WHERE appeal_id = $1", appeal_id)
    return await conn.fetchrow("SELECT * FROM appeals WHERE channel = $1 AND source_id = $2", channel, source_id)


async def timeline_of(conn: asyncpg.Connection, appeal_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT event_id, subject, occurred_at, actor, what FROM timeline WHERE appeal_id = $1 "
        "ORDER BY occurred_at, subject",
        appeal_id,
    )
