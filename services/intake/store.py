"""Intake's SQL (schema ``intake``), and the repositories the unit of work hands to the use cases.

The functions are the SQL, one statement each; :class:`Appeals` and
:class:`Timeline` bind them to a unit of work's connection, so a service-layer
test can put in-memory fakes in their place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
from pydantic import ValidationError

from services.intake.domain import CLOCK_SUBJECTS, NewAppeal, RegisteredAppeal, TimelineEntry
from services.intake.duplicates import Candidate, DuplicateLink
from services.intake.topics import OTHER, TopicAppeal
from shared.contracts import EventRecord
from shared.contracts.subjects import contract_for


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


async def save_coffee_events(conn: asyncpg.Connection, records: Sequence[EventRecord]) -> None:
    """Keep each coffee-event record once (its items become appeals; the record keeps theme and attendees)."""
    if not records:
        return
    await conn.executemany(
        """
        INSERT INTO coffee_events (event_id, kind, event_date, organizer_unit, theme, attendees, items)
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING
        """,
        [(r.event_id, r.kind.value, r.date, r.organizer_unit, r.theme, r.attendees,
          [json.loads(i.model_dump_json()) for i in r.items]) for r in records],
    )


async def add_timeline(conn: asyncpg.Connection, entries: Sequence[TimelineEntry]) -> int:
    """Insert the entries whose event id is new (once per event id); returns how many were new."""
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
        [e.body.decode() if e.body is not None else e.payload.model_dump_json() if e.payload is not None else "{}"
         for e in entries],
    )
    return int(result.split()[-1])


async def find_appeal(conn: asyncpg.Connection, appeal_id: str | None = None, channel: str | None = None,
                      source_id: str | None = None) -> asyncpg.Record | None:
    """One appeal, by its id or by (channel, source id)."""
    if appeal_id:
        return await conn.fetchrow("SELECT * FROM appeals WHERE appeal_id = $1", appeal_id)
    return await conn.fetchrow("SELECT * FROM appeals WHERE channel = $1 AND source_id = $2", channel, source_id)


async def timeline_of(conn: asyncpg.Connection, appeal_id: str) -> list[asyncpg.Record]:
    """An appeal's timeline, oldest first."""
    return await conn.fetch(
        "SELECT event_id, subject, occurred_at, actor, what, payload FROM timeline WHERE appeal_id = $1 "
        "ORDER BY occurred_at, subject",
        appeal_id,
    )


async def appeals_received(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[asyncpg.Record]:
    """The appeals received in [start, end), oldest first, each with the category it was last routed as.

    The routed category is read from the appeal's ``ct.order.dispatched`` events in
    the timeline (a lead unit's order before a co-handling one, the latest first),
    so a redispatch after a return counts with its corrected category; null when
    the appeal has not been dispatched (queued, or not routed yet).
    """
    return await conn.fetch(
        """
        SELECT a.appeal_id, a.content, a.received_at, a.kind, a.category_hint,
               coalesce(a.enterprise_uscc, a.contact_phone) AS enterprise_key, routed.category AS routed_category
        FROM appeals a
        LEFT JOIN LATERAL (
            SELECT t.payload->>'category' AS category FROM timeline t
            WHERE t.appeal_id = a.appeal_id AND t.subject = 'ct.order.dispatched'
            ORDER BY (t.payload->>'role' = 'lead') DESC, t.occurred_at DESC LIMIT 1
        ) routed ON true
        WHERE a.received_at >= $1 AND a.received_at < $2
        ORDER BY a.received_at, a.appeal_id
        """,
        start, end,
    )


async def duplicate_candidates(conn: asyncpg.Connection, usccs: Sequence[str], phones: Sequence[str],
                               start: datetime, end: datetime) -> list[asyncpg.Record]:
    """The appeals received in [start, end] with one of these credit codes or phones: the possible masters.

    One query for a whole batch (the indexes ``appeals_by_uscc`` and ``appeals_by_phone``
    of 003_duplicates.sql); each row with the category it was last routed as (as
    :func:`appeals_received` reads it) and the master it follows unless it was split.
    """
    return await conn.fetch(
        """
        SELECT a.appeal_id, a.received_at, a.content, a.kind, a.enterprise_uscc, a.contact_phone, a.category_hint,
               CASE WHEN a.split_at IS NULL THEN a.master_appeal_id END AS master_appeal_id,
               routed.category AS routed_category
        FROM appeals a
        LEFT JOIN LATERAL (
            SELECT t.payload->>'category' AS category FROM timeline t
            WHERE t.appeal_id = a.appeal_id AND t.subject = 'ct.order.dispatched'
            ORDER BY (t.payload->>'role' = 'lead') DESC, t.occurred_at DESC LIMIT 1
        ) routed ON true
        WHERE (a.enterprise_uscc = ANY($1::text[]) OR a.contact_phone = ANY($2::text[]))
          AND a.received_at >= $3 AND a.received_at <= $4
        """,
        list(usccs), list(phones), start, end,
    )


async def link_duplicates(conn: asyncpg.Connection, links: Sequence[tuple[str, str, float]]) -> None:
    """(appeal_id, master_appeal_id, similarity) of the duplicates just found."""
    if links:
        await conn.execute(
            "UPDATE appeals a SET master_appeal_id = l.master, similarity = l.similarity "
            "FROM unnest($1::text[], $2::text[], $3::real[]) AS l(appeal_id, master, similarity) "
            "WHERE a.appeal_id = l.appeal_id",
            [a for a, _, _ in links], [m for _, m, _ in links], [x for _, _, x in links])


async def lock_duplicate_link(conn: asyncpg.Connection, appeal_id: str) -> asyncpg.Record | None:
    """An appeal's link to its master, locked for this transaction (a split runs once)."""
    return await conn.fetchrow(
        "SELECT appeal_id, channel, source_id, master_appeal_id, similarity, split_at, split_by "
        "FROM appeals WHERE appeal_id = $1 FOR UPDATE", appeal_id)


async def mark_split(conn: asyncpg.Connection, appeal_id: str, at: datetime, by: str) -> None:
    """The duplicate no longer follows its master (the link stays, for the record)."""
    await conn.execute("UPDATE appeals SET split_at = $2, split_by = $3 WHERE appeal_id = $1", appeal_id, at, by)


# --- repositories ---------------------------------------------------------------------


class Appeals:
    """The appeals and coffee-event records, on one unit of work's connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_new(self, appeals: Sequence[NewAppeal], msg_ids: Sequence[str | None]) -> dict[tuple[str, str], str]:
        """Register the appeals not registered yet; {(channel, source_id): appeal_id} of the new ones."""
        return await register_appeals(self.conn, list(appeals), list(msg_ids))

    async def keep_event_records(self, records: Sequence[EventRecord]) -> None:
        """Keep the coffee-event records (once each)."""
        await save_coffee_events(self.conn, records)

    async def duplicate_candidates(self, usccs: Sequence[str], phones: Sequence[str], start: datetime, end: datetime,
                                   category_of: Callable[[str], str | None] | None = None) -> list[Candidate]:
        """The possible masters of a batch (see :func:`duplicate_candidates`) as
        :class:`~services.intake.duplicates.Candidate`: the routed category, else the hint's."""
        out = []
        for r in await duplicate_candidates(self.conn, usccs, phones, start, end):
            hint = r["category_hint"].strip() if r["category_hint"] else None
            category = r["routed_category"] or (hint and ((category_of(hint) if category_of else None) or hint))
            out.append(Candidate(appeal_id=r["appeal_id"], received_at=r["received_at"], content=r["content"],
                                 kind=r["kind"], enterprise_uscc=r["enterprise_uscc"],
                                 contact_phone=r["contact_phone"], category=category or None,
                                 master_appeal_id=r["master_appeal_id"]))
        return out

    async def link_duplicates(self, links: Sequence[tuple[str, str, float]]) -> None:
        """(appeal_id, master_appeal_id, similarity) of the duplicates just found."""
        await link_duplicates(self.conn, links)

    async def lock_link(self, appeal_id: str) -> DuplicateLink | None:
        """An appeal's link to its master, locked for this transaction; None when there is no such appeal."""
        r = await lock_duplicate_link(self.conn, appeal_id)
        if r is None:
            return None
        return DuplicateLink(appeal_id=r["appeal_id"], source_ref=f"{r['channel']}:{r['source_id']}",
                             master_appeal_id=r["master_appeal_id"], similarity=r["similarity"],
                             split_at=r["split_at"], split_by=r["split_by"])

    async def mark_split(self, appeal_id: str, at: datetime, by: str) -> None:
        """The duplicate no longer follows its master."""
        await mark_split(self.conn, appeal_id, at, by)

    async def find(self, appeal_id: str | None = None, channel: str | None = None,
                   source_id: str | None = None) -> RegisteredAppeal | None:
        """One appeal, by its id or by (channel, source id); None when there is none."""
        row = await find_appeal(self.conn, appeal_id, channel, source_id)
        if row is None:
            return None
        return RegisteredAppeal(
            appeal_id=row["appeal_id"], channel=row["channel"], source_id=row["source_id"], content=row["content"],
            kind=row["kind"], received_at=row["received_at"], registered_at=row["registered_at"],
            enterprise_name=row["enterprise_name"], contact_phone=row["contact_phone"],
        )


def clock_payload(subject: str, payload: dict | None):
    """The stored event of a clock subject (:data:`domain.CLOCK_SUBJECTS`) as its model; None otherwise or unreadable."""
    if subject not in CLOCK_SUBJECTS or not payload:
        return None
    try:
        return contract_for(subject).model_validate(payload)
    except ValidationError:  # a row stored before a field existed, or by hand: the line stays, the clock skips it
        return None


class Timeline:
    """Every appeal's timeline, on one unit of work's connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, entries: Sequence[TimelineEntry]) -> int:
        """Add the entries whose event id is new; returns how many were."""
        return await add_timeline(self.conn, entries)

    async def of(self, appeal_id: str) -> list[TimelineEntry]:
        """The timeline of ``appeal_id``, oldest first; the clock events' payloads read back as their models."""
        return [TimelineEntry(event_id=r["event_id"], appeal_id=appeal_id, subject=r["subject"],
                              occurred_at=r["occurred_at"], actor=r["actor"], what=r["what"],
                              payload=clock_payload(r["subject"], r["payload"]))
                for r in await timeline_of(self.conn, appeal_id)]


class TopicAppeals:
    """The appeals as the hot-topics analysis reads them (:class:`services.intake.topics.TopicAppeal`).

    ``category_of`` turns a sender's hint into the district's category name (an
    alias or code into its name; None when the hint names no category: the hint is kept as it is).
    """

    def __init__(self, conn: asyncpg.Connection, category_of: Callable[[str], str | None] | None = None) -> None:
        self.conn = conn
        self.category_of = category_of or (lambda hint: hint)

    async def in_window(self, start: datetime, end: datetime) -> list[TopicAppeal]:
        """The appeals received in [start, end): the routed category, else the hint's, else 其他."""
        out = []
        for r in await appeals_received(self.conn, start, end):
            hint = r["category_hint"].strip() if r["category_hint"] else None
            category = r["routed_category"] or (hint and (self.category_of(hint) or hint)) or OTHER
            out.append(TopicAppeal(appeal_id=r["appeal_id"], content=r["content"], received_at=r["received_at"],
                                   category=category, enterprise_key=r["enterprise_key"], kind=r["kind"]))
        return out
