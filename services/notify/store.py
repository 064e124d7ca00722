"""Notify's SQL (schema ``notify``): contacts, waiting events, notifications, attempts, SMS replies.

The use cases reach these through :class:`services.notify.unit_of_work.NotifyRepository`;
the delivery workers' claims and leases use them directly (short transactions of their own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from services.notify.domain import AttemptOutcome, EnterpriseContact, PlannedNotification
from shared.contracts.subjects import contract_for
from shared.db import each_key

# --- locks, contacts and waiting events ----------------------------------------------------------


async def lock_appeals(conn: asyncpg.Connection, appeal_ids: Iterable[str]) -> None:
    """Serialise the transactions touching the same appeals (contact stored vs. event parked).

    Locks are taken in hash order, so two batches never wait for each other in a cycle.
    """
    keys = sorted({a for a in appeal_ids if a})
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(h) FROM ("
            " SELECT DISTINCT hashtextextended('coffeetime.notify.appeal:' || a, 0) AS h"
            " FROM unnest($1::text[]) AS a ORDER BY h) AS ordered",
            keys,
        )


async def save_contacts(conn: asyncpg.Connection, contacts: Mapping[str, tuple[EnterpriseContact, str]]) -> None:
    """Keep each appeal's contact, first registration wins: {appeal_id: (contact, event_id)}."""
    if not contacts:
        return
    ids = list(contacts)
    rows = [contacts[a] for a in ids]
    await conn.execute(
        """
        INSERT INTO appeal_contacts (appeal_id, name, phone, lang, enterprise_name, category_hint, urgent, event_id)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                             $7::bool[], $8::text[])
        ON CONFLICT (appeal_id) DO NOTHING
        """,
        ids, [c.name for c, _ in rows], [c.phone for c, _ in rows], [c.lang for c, _ in rows],
        [c.enterprise_name for c, _ in rows], [c.category for c, _ in rows],
        [c.urgent for c, _ in rows], [e for _, e in rows],
    )


_CONTACTS_OF = each_key("appeal_contacts", "appeal_id",
                        "appeal_id, name, phone, lang, enterprise_name, category_hint, urgent")
"""An index probe per appeal, whatever the table's statistics (``= ANY`` read the whole table by sequential scan
on a table grown since it was analysed: 27 rows per appeal in the bench)."""


async def contacts_of(conn: asyncpg.Connection, appeal_ids: Iterable[str]) -> dict[str, EnterpriseContact]:
    """The stored contacts of these appeals, by appeal id."""
    keys = sorted({a for a in appeal_ids if a})
    if not keys:
        return {}
    rows = await conn.fetch(_CONTACTS_OF, keys)
    return {
        r["appeal_id"]: EnterpriseContact(name=r["name"], phone=r["phone"], lang=r["lang"],
                                          enterprise_name=r["enterprise_name"], category=r["category_hint"],
                                          urgent=r["urgent"])
        for r in rows
    }


@dataclass(frozen=True)
class WaitingEvent:
    """An event that waits for its appeal's contact: its subject and its contract model."""

    subject: str
    event: BaseModel

    @property
    def event_id(self) -> str:
        """The waiting event's id."""
        return str(getattr(self.event, "event_id", "") or "")

    @property
    def appeal_id(self) -> str:
        """The appeal whose contact it waits for."""
        return str(getattr(self.event, "appeal_id", "") or "")


def _waiting(rows: Iterable[asyncpg.Record]) -> list[WaitingEvent]:
    """Waiting rows, oldest first, each payload parsed back into its subject's contract model."""
    return [WaitingEvent(r["subject"], contract_for(r["subject"]).model_validate(r["payload"]))
            for r in sorted(rows, key=lambda r: r["waiting_since"])]


async def park(conn: asyncpg.Connection, events: Sequence[WaitingEvent], now: datetime) -> None:
    """Keep events that wait for their appeal's contact (once per event id)."""
    if not events:
        return
    await conn.execute(
        """
        INSERT INTO waiting_events (event_id, appeal_id, subject, payload, waiting_since)
        SELECT e, a, s, p::jsonb, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(e, a, s, p)
        ON CONFLICT (event_id) DO NOTHING
        """,
        [w.event_id for w in events], [w.appeal_id for w in events], [w.subject for w in events],
        [w.event.model_dump_json() for w in events], now,
    )


async def take_waiting_for(conn: asyncpg.Connection, appeal_ids: Iterable[str]) -> list[WaitingEvent]:
    """Remove and return the events waiting for these appeals' contacts."""
    keys = sorted(set(appeal_ids))
    if not keys:
        return []
    rows = await conn.fetch(
        "DELETE FROM waiting_events WHERE appeal_id = ANY($1::text[]) RETURNING subject, payload, waiting_since",
        keys,
    )
    return _waiting(rows)


async def waiting_to_release(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> list[asyncpg.Record]:
    """Waiting events whose contact is known by now, or that waited since before ``cutoff``."""
    return await conn.fetch(
        """
        SELECT w.event_id, w.appeal_id FROM waiting_events w
        WHERE w.waiting_since <= $1 OR EXISTS (SELECT 1 FROM appeal_contacts c WHERE c.appeal_id = w.appeal_id)
        ORDER BY w.waiting_since LIMIT $2
        """,
        cutoff, limit,
    )


async def take_waiting(conn: asyncpg.Connection, event_ids: Sequence[str]) -> list[WaitingEvent]:
    """Remove and return these waiting events (those another replica took meanwhile are gone)."""
    rows = await conn.fetch(
        "DELETE FROM waiting_events WHERE event_id = ANY($1::text[]) RETURNING subject, payload, waiting_since",
        list(event_ids),
    )
    return _waiting(rows)


async def count_waiting(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM waiting_events")


# --- notifications -------------------------------------------------------------------------------


async def add_notifications(conn: asyncpg.Connection,
                            planned: Sequence[tuple[PlannedNotification, str]]) -> list[str]:
    """Insert the planned messages not planned before: ``(notification, correlation_id)`` pairs.

    Returns the channels of the rows inserted now (a redelivered event inserts nothing).
    """
    unique = list({p.notification_id: (p, c) for p, c in planned}.values())
    if not unique:
        return []
    ps = [p for p, _ in unique]
    rows = await conn.fetch(
        """
        INSERT INTO notifications (notification_id, cause_event_id, cause_subject, correlation_id, appeal_id, channel,
                                   address, recipient_role, recipient_name, template, template_kind, lang, text,
                                   subject, not_before, urgent, next_attempt_at)
        SELECT n, ce, cs, co, a, ch, ad, rr, rn, t, tk, l, tx, s, nb, u, nb
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                    $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                    $15::timestamptz[], $16::bool[])
             AS x(n, ce, cs, co, a, ch, ad, rr, rn, t, tk, l, tx, s, nb, u)
        ON CONFLICT (notification_id) DO NOTHING
        RETURNING channel
        """,
        [p.notification_id for p in ps], [p.cause_event_id for p in ps], [p.cause_subject for p in ps],
        [c for _, c in unique], [p.appeal_id for p in ps], [p.channel for p in ps], [p.address for p in ps],
        [p.recipient_role for p in ps], [p.recipient_name for p in ps], [p.template for p in ps],
        [p.template_kind.value for p in ps], [p.lang for p in ps], [p.text for p in ps], [p.subject for p in ps],
        [p.not_before for p in ps], [p.urgent for p in ps],
    )
    return [r["channel"] for r in rows]


@dataclass(frozen=True)
class Claim:
    """A notification a worker took for one attempt; ``claim_no`` fences its outcome."""

    notification_id: str
    channel: str
    address: str
    text: str
    subject: str | None
    appeal_id: str | None
    cause_event_id: str
    correlation_id: str
    template: str
    claim_no: int
    attempt: int  # this attempt's number among the attempts whose outcome counts
    unknown: int = 0  # earlier sends of the current retry budget whose outcome is unknown (cut short)


async def claim_due(conn: asyncpg.Connection, channel: str, now: datetime, lease_until: datetime,
                    limit: int, *, receipts_only: bool = False) -> list[Claim]:
    """Take up to ``limit`` due pending messages of ``channel`` under a lease, in one short transaction.

    ``SKIP LOCKED`` lets replicas claim side by side; moving ``next_attempt_at`` to the
    lease's end hides a claimed row from the others until the outcome is recorded, or
    until the lease runs out when the worker died mid-send. Receipts come first, then
    urgent appeals' messages, then each by when it became sendable (its retry time, or
    the end of quiet hours), read in that order from the index ``notifications_claim``: a
    round reads about the rows it claims, however many are pending. ``receipts_only`` is
    the receipt lane's claim (receipts alone), so a round of liaison messages in flight
    never holds back an enterprise's receipt.
    """
    rows = await conn.fetch(_CLAIM_RECEIPTS if receipts_only else _CLAIM, channel, now, lease_until, limit)
    return [
        Claim(r["notification_id"], r["channel"], r["address"], r["text"], r["subject"], r["appeal_id"],
              r["cause_event_id"], r["correlation_id"], r["template"], r["claims"], r["attempts"] + 1, r["unknown"])
        for r in rows
    ]


_CLAIM_TEMPLATE = """
UPDATE notifications n
SET claims = n.claims + 1, locked_until = $3, next_attempt_at = $3
FROM (
    SELECT notification_id FROM notifications
    WHERE status = 'pending' AND channel = $1 {kind}AND greatest(next_attempt_at, not_before) <= $2
      AND (locked_until IS NULL OR locked_until <= $2)
    ORDER BY template_kind = 'receipt' DESC, urgent DESC, greatest(next_attempt_at, not_before)
    LIMIT $4
    FOR UPDATE SKIP LOCKED
) due
WHERE n.notification_id = due.notification_id
RETURNING n.notification_id, n.channel, n.address, n.text, n.subject, n.appeal_id, n.cause_event_id,
          n.correlation_id, n.template, n.claims, n.attempts,
          (SELECT count(*) FROM delivery_attempts a
           WHERE a.notification_id = n.notification_id AND a.outcome IN ('sending', 'unknown')
             AND a.attempt > n.retry_from_claim) AS unknown
"""
_CLAIM = _CLAIM_TEMPLATE.format(kind="")
_CLAIM_RECEIPTS = _CLAIM_TEMPLATE.format(kind="AND template_kind = 'receipt' ")
"""Both read ``notifications_claim`` in its order; the receipt lane's condition (written into the text, not a
parameter) is the index's second column, so its rows are the index's receipts of the channel, in claim order."""


CUT_SHORT = "cut short before its outcome was recorded"
"""The error of an attempt whose send was started and whose outcome never came (a crash, a lost database)."""


@dataclass(frozen=True)
class Marked:
    """What :func:`mark_sending` found: the claims that still hold, and those that are resends."""

    held: frozenset[str]
    """Notification ids whose claim still holds: marked 'sending', theirs to send now."""
    resends: frozenset[str]
    """Those of ``held`` whose earlier send has an unknown outcome (it was in flight at a crash or an outage)."""


async def mark_sending(conn: asyncpg.Connection, claims: Sequence[Claim], now: datetime,
                       lease_until: datetime) -> Marked:
    """Log the attempts about to be sent as 'sending', in one transaction, BEFORE they go to their channel.

    Only claims that still hold are marked (their lease is renewed to ``lease_until``); an
    earlier attempt of the same message still 'sending' becomes 'unknown': that send was
    cut short and its outcome never recorded, so the one about to start is a resend.
    """
    if not claims:
        return Marked(frozenset(), frozenset())
    claims = sorted(claims, key=lambda c: c.notification_id)  # row locks in id order: no cycle with a recording
    ids, claim_nos = [c.notification_id for c in claims], [c.claim_no for c in claims]
    async with conn.transaction():
        held = await conn.fetch(
            """
            UPDATE notifications n SET locked_until = $3, next_attempt_at = $3
            FROM unnest($1::text[], $2::int[]) AS c(id, claim_no)
            WHERE n.notification_id = c.id AND n.claims = c.claim_no AND n.status = 'pending'
              AND n.notification_id = ANY($1::text[])
            RETURNING n.notification_id, n.claims
            """,
            ids, claim_nos, lease_until,
        )
        if not held:
            return Marked(frozenset(), frozenset())
        held_ids, held_claims = [r["notification_id"] for r in held], [r["claims"] for r in held]
        await conn.execute(
            """
            INSERT INTO delivery_attempts (notification_id, attempt, at, outcome, error, duration_ms)
            SELECT i, a, $3, 'sending', NULL, 0 FROM unnest($1::text[], $2::int[]) AS x(i, a)
            ON CONFLICT (notification_id, attempt) DO NOTHING
            """,
            held_ids, held_claims, now,
        )
        earlier = await conn.fetch(
            """
            UPDATE delivery_attempts d SET outcome = 'unknown', error = $3
            FROM unnest($1::text[], $2::int[]) AS x(i, a)
            WHERE d.notification_id = x.i AND d.attempt < x.a AND d.outcome = 'sending'
              AND d.notification_id = ANY($1::text[])
            RETURNING d.notification_id
            """,
            held_ids, held_claims, CUT_SHORT,
        )
    return Marked(frozenset(held_ids), frozenset(r["notification_id"] for r in earlier))



@dataclass(frozen=True)
class Recorded:
    """One attempt's outcome, to store with the others of its round."""

    claim: Claim
    outcome: AttemptOutcome
    duration_ms: int


async def record_outcomes(conn: asyncpg.Connection, recorded: Sequence[Recorded], now: datetime) -> set[str]:
    """Store a round's outcomes in one statement, each only if its claim still holds.

    Returns the ids of the notifications whose claim held; the others were taken by
    another worker since (their lease ran out) and keep that worker's state.
    Rows are taken in id order, so two rounds never wait for each other in a cycle.
    """
    if not recorded:
        return set()
    items = sorted(recorded, key=lambda r: r.claim.notification_id)
    rows = await conn.fetch(
        """
        UPDATE notifications n SET
            status = CASE WHEN o.result = 'retried' THEN 'pending' ELSE o.result END,
            attempts = o.attempt,
            last_error = o.error,
            next_attempt_at = COALESCE(o.retry_at, n.next_attempt_at),
            delivered_at = CASE WHEN o.result = 'delivered' THEN $7::timestamptz END,
            failed_at = CASE WHEN o.result = 'failed' THEN $7::timestamptz END,
            locked_until = NULL
        FROM unnest($1::text[], $2::int[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
             AS o(id, claim_no, result, attempt, error, retry_at)
        WHERE n.notification_id = o.id AND n.claims = o.claim_no AND n.status = 'pending'
          AND n.notification_id = ANY($1::text[])
        RETURNING n.notification_id
        """,
        [r.claim.notification_id for r in items], [r.claim.claim_no for r in items],
        [r.outcome.result for r in items], [r.claim.attempt for r in items], [r.outcome.error for r in items],
        [r.outcome.retry_at for r in items], now,
    )
    return {r["notification_id"] for r in rows}


async def record_outcome(conn: asyncpg.Connection, claim: Claim, outcome: AttemptOutcome, now: datetime) -> bool:
    """Store an attempt's outcome if the claim still holds; False when another worker took the row since."""
    return bool(await record_outcomes(conn, [Recorded(claim, outcome, 0)], now))


async def add_attempts(conn: asyncpg.Connection, recorded: Sequence[Recorded], at: datetime) -> None:
    """Log a round's attempts (numbered by claim) in one insert.

    The outcome replaces the attempt's 'sending' mark (or the 'unknown' a later claim made
    of it, when this outcome comes late); an outcome logged before is kept.
    """
    if not recorded:
        return
    await conn.execute(
        """
        INSERT INTO delivery_attempts (notification_id, attempt, at, outcome, error, duration_ms)
        SELECT i, a, $6, o, e, d FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::int[])
             AS x(i, a, o, e, d)
        ON CONFLICT (notification_id, attempt) DO UPDATE
            SET at = EXCLUDED.at, outcome = EXCLUDED.outcome, error = EXCLUDED.error, duration_ms = EXCLUDED.duration_ms
            WHERE delivery_attempts.outcome IN ('sending', 'unknown')
        """,
        [r.claim.notification_id for r in recorded], [r.claim.claim_no for r in recorded],
        [r.outcome.result for r in recorded], [r.outcome.error for r in recorded],
        [r.duration_ms for r in recorded], at,
    )
    # an earlier attempt still 'sending' was cut short (a message given up was never marked by mark_sending)
    await conn.execute(
        """
        UPDATE delivery_attempts d SET outcome = 'unknown', error = $3
        FROM unnest($1::text[], $2::int[]) AS x(i, a)
        WHERE d.notification_id = x.i AND d.attempt < x.a AND d.outcome = 'sending'
              AND d.notification_id = ANY($1::text[])
        """,
        [r.claim.notification_id for r in recorded], [r.claim.claim_no for r in recorded], CUT_SHORT,
    )


async def add_attempt(conn: asyncpg.Connection, claim: Claim, at: datetime, outcome: AttemptOutcome,
                      duration_ms: int) -> None:
    await add_attempts(conn, [Recorded(claim, outcome, duration_ms)], at)


async def extend_leases(conn: asyncpg.Connection, claims: Sequence[Claim], lease_until: datetime) -> int:
    """Push the lease of claims still held (a long round) to ``lease_until``; returns how many were extended."""
    if not claims:
        return 0
    claims = sorted(claims, key=lambda c: c.notification_id)
    status = await conn.execute(
        """
        UPDATE notifications n SET locked_until = $3, next_attempt_at = $3
        FROM unnest($1::text[], $2::int[]) AS c(id, claim_no)
        WHERE n.notification_id = c.id AND n.claims = c.claim_no AND n.status = 'pending'
          AND n.notification_id = ANY($1::text[])
        """,
        [c.notification_id for c in claims], [c.claim_no for c in claims], lease_until,
    )
    return int(status.rsplit(" ", 1)[-1])


async def release(conn: asyncpg.Connection, claim: Claim, now: datetime) -> None:
    """Give a claimed row back at once (the worker stops mid-send): the next attempt uses the same id."""
    await release_many(conn, [claim], now)


async def release_many(conn: asyncpg.Connection, claims: Sequence[Claim], now: datetime, *,
                       unsent: bool = False) -> None:
    """Give claimed rows back at once, each only if its claim still holds.

    ``unsent``: the rows were never handed to their channel, so the claim is undone
    too (it counts towards giving up only when an attempt may have been made).
    """
    if not claims:
        return
    await conn.execute(
        """
        UPDATE notifications n SET locked_until = NULL, next_attempt_at = $3,
                                   claims = CASE WHEN $4 THEN n.claims - 1 ELSE n.claims END
        FROM unnest($1::text[], $2::int[]) AS c(id, claim_no)
        WHERE n.notification_id = c.id AND n.claims = c.claim_no AND n.status = 'pending'
          AND n.notification_id = ANY($1::text[])
        """,
        [c.notification_id for c in claims], [c.claim_no for c in claims], now, unsent,
    )


async def failed(conn: asyncpg.Connection, *, channel: str | None = None, since: datetime | None = None,
                 ids: Sequence[str] = (), limit: int = 1000) -> list[asyncpg.Record]:
    """Messages that failed for good (oldest failure first), optionally of one channel, since a time, or by id."""
    return await conn.fetch(
        """
        SELECT notification_id, channel, address, template, appeal_id, attempts, last_error, failed_at
        FROM notifications
        WHERE status = 'failed' AND ($1::text IS NULL OR channel = $1) AND ($2::timestamptz IS NULL OR failed_at >= $2)
          AND (cardinality($3::text[]) = 0 OR notification_id = ANY($3::text[]))
        ORDER BY failed_at, notification_id LIMIT $4
        """,
        channel, since, list(ids), limit,
    )


async def retry_failed(conn: asyncpg.Connection, notification_ids: Sequence[str], now: datetime) -> list[str]:
    """Give failed messages a new retry budget: pending again, due now, under the same id. Returns those retried."""
    rows = await conn.fetch(
        """
        UPDATE notifications SET status = 'pending', attempts = 0, retry_from_claim = claims, next_attempt_at = $2,
                                 locked_until = NULL, failed_at = NULL,
                                 last_error = 'retried by operations after: ' || coalesce(last_error, '')
        WHERE notification_id = ANY($1::text[]) AND status = 'failed'
        RETURNING notification_id
        """,
        list(notification_ids), now,
    )
    return [r["notification_id"] for r in rows]


@dataclass(frozen=True)
class ListPosition:
    """Where a page of an appeal's notifications ended: the sort key of its last row."""

    created_at: datetime
    cause_subject: str
    channel: str
    notification_id: str


async def notifications_of(conn: asyncpg.Connection, appeal_id: str, limit: int,
                           after: ListPosition | None = None) -> list[asyncpg.Record]:
    """Up to ``limit`` notifications of an appeal in planning order, those after ``after`` (keyset paging)."""
    if after is None:
        return await conn.fetch(
            "SELECT * FROM notifications WHERE appeal_id = $1 "
            "ORDER BY created_at, cause_subject, channel, notification_id LIMIT $2",
            appeal_id, limit,
        )
    return await conn.fetch(
        "SELECT * FROM notifications WHERE appeal_id = $1 "
        "AND (created_at, cause_subject, channel, notification_id) > ($3, $4, $5, $6) "
        "ORDER BY created_at, cause_subject, channel, notification_id LIMIT $2",
        appeal_id, limit, after.created_at, after.cause_subject, after.channel, after.notification_id,
    )


async def notification(conn: asyncpg.Connection, notification_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM notifications WHERE notification_id = $1", notification_id)


async def attempts_of(conn: asyncpg.Connection, notification_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT attempt, at, outcome, error, duration_ms FROM delivery_attempts WHERE notification_id = $1 "
        "ORDER BY attempt",
        notification_id,
    )


# --- SMS replies -------------------------------------------------------------------------------------


async def latest_rating_invitation(conn: asyncpg.Connection, phone: str) -> asyncpg.Record | None:
    """The latest rating invitation delivered to ``phone``: its appeal and notification id."""
    return await conn.fetchrow(
        """
        SELECT appeal_id, notification_id FROM notifications
        WHERE channel = 'sms' AND address = $1 AND template_kind = 'rating_invitation' AND status = 'delivered'
          AND appeal_id IS NOT NULL
        ORDER BY delivered_at DESC LIMIT 1
        """,
        phone,
    )


async def save_inbound_sms(conn: asyncpg.Connection, *, message_id: str, phone: str, text: str,
                           received_at: datetime | None, status_code: int, accepted: bool, reason: str | None,
                           appeal_id: str | None, rating: str | None, feedback_id: str | None) -> bool:
    """Record a reply once per gateway message id; False when that id was handled before."""
    inserted = await conn.fetchval(
        """
        INSERT INTO inbound_sms (message_id, phone, text, received_at, status_code, accepted, reason, appeal_id,
                                 rating, feedback_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING true
        """,
        message_id, phone, text, received_at, status_code, accepted, reason, appeal_id, rating, feedback_id,
    )
    return bool(inserted)


async def inbound_sms(conn: asyncpg.Connection, message_id: str) -> asyncpg.Record | None:
    """The reply recorded under a gateway message id, with the answer it got."""
    return await conn.fetchrow("SELECT * FROM inbound_sms WHERE message_id = $1", message_id)


async def remember_nonce(conn: asyncpg.Connection, nonce: str, signed_at: datetime, forget_before: datetime) -> bool:
    """Remember a signed request's nonce; False when it was seen before (a replay). Nonces signed
    before ``forget_before`` (their requests are stale now) are forgotten in the same transaction."""
    async with conn.transaction():
        await conn.execute("DELETE FROM inbound_nonces WHERE signed_at < $1", forget_before)
        return bool(await conn.fetchval(
            "INSERT INTO inbound_nonces (nonce, signed_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING RETURNING true",
            nonce, signed_at))
