"""Notify's unit of work: the shared one, plus the repository its use cases work through.

:class:`NotifyRepository` is the small surface of ``store.py`` the use cases need
(contacts, waiting events, notifications, delivery outcomes, SMS replies), bound to the
unit of work's connection, so a service-layer test replaces it with an in-memory fake
(``tests/unit/test_notify_service_layer.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import asyncpg

from services.notify import store
from services.notify.domain import EnterpriseContact, PlannedNotification
from shared.unit_of_work import UnitOfWork


class NotifyRepository:
    """What notify remembers, as the use cases see it; each call runs in the unit of work's transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- planning -----------------------------------------------------------------------

    async def lock_appeals(self, appeal_ids: Iterable[str]) -> None:
        """Serialise this transaction with the others touching the same appeals."""
        await store.lock_appeals(self.conn, appeal_ids)

    async def save_contacts(self, contacts: Mapping[str, tuple[EnterpriseContact, str]]) -> None:
        """Keep each appeal's contact (first registration wins): {appeal_id: (contact, event_id)}."""
        await store.save_contacts(self.conn, contacts)

    async def contacts_of(self, appeal_ids: Iterable[str]) -> dict[str, EnterpriseContact]:
        """The stored contacts of these appeals."""
        return await store.contacts_of(self.conn, appeal_ids)

    async def park(self, events: Sequence[store.WaitingEvent], now: datetime) -> None:
        """Keep events that wait for their appeal's contact (once per event id)."""
        await store.park(self.conn, events, now)

    async def take_waiting_for(self, appeal_ids: Iterable[str]) -> list[store.WaitingEvent]:
        """Remove and return the events waiting for these appeals' contacts."""
        return await store.take_waiting_for(self.conn, appeal_ids)

    async def waiting_to_release(self, cutoff: datetime, limit: int) -> list[tuple[str, str]]:
        """(event id, appeal id) of waiting events whose contact is known, or that waited since before ``cutoff``."""
        return [(r["event_id"], r["appeal_id"]) for r in await store.waiting_to_release(self.conn, cutoff, limit)]

    async def take_waiting(self, event_ids: Sequence[str]) -> list[store.WaitingEvent]:
        """Remove and return these waiting events (those another replica took meanwhile are gone)."""
        return await store.take_waiting(self.conn, event_ids)

    async def add_notifications(self, planned: Sequence[tuple[PlannedNotification, str]]) -> list[str]:
        """Insert the messages not planned before; the channels of those inserted now."""
        return await store.add_notifications(self.conn, planned)

    # --- delivery -----------------------------------------------------------------------

    async def record_outcomes(self, recorded: Sequence[store.Recorded], now: datetime) -> set[str]:
        """Store a round's outcomes whose claim still holds; the ids of those."""
        return await store.record_outcomes(self.conn, recorded, now)

    async def add_attempts(self, recorded: Sequence[store.Recorded], at: datetime) -> None:
        """Log a round's attempts."""
        await store.add_attempts(self.conn, recorded, at)

    async def release(self, claims: Sequence[store.Claim], now: datetime, *, unsent: bool = False) -> None:
        """Give claimed rows back at once (``unsent``: never handed to their channel, the claim is undone too)."""
        await store.release_many(self.conn, claims, now, unsent=unsent)

    # --- reading ------------------------------------------------------------------------

    async def notifications_of(self, appeal_id: str, limit: int,
                               after: store.ListPosition | None = None) -> list[asyncpg.Record]:
        """An appeal's notifications in planning order, a page at a time."""
        return await store.notifications_of(self.conn, appeal_id, limit, after)

    async def notification(self, notification_id: str) -> asyncpg.Record | None:
        """One notification."""
        return await store.notification(self.conn, notification_id)

    async def attempts_of(self, notification_id: str) -> list[asyncpg.Record]:
        """Every attempt of one notification."""
        return await store.attempts_of(self.conn, notification_id)

    # --- SMS replies --------------------------------------------------------------------

    async def appeal_invited_to_rate(self, phone: str) -> str | None:
        """The appeal of the latest rating invitation delivered to ``phone``, if any."""
        row = await store.latest_rating_invitation(self.conn, phone)
        return row["appeal_id"] if row else None

    async def save_inbound_sms(self, **reply) -> bool:
        """Record a reply and its answer once per gateway message id; False when that id came before."""
        return await store.save_inbound_sms(self.conn, **reply)

    async def inbound_sms(self, message_id: str) -> asyncpg.Record | None:
        """The reply recorded under a gateway message id, with the answer it got."""
        return await store.inbound_sms(self.conn, message_id)


class NotifyUnitOfWork(UnitOfWork):
    """One notify transaction, with :attr:`notifications` on its connection."""

    notifications: NotifyRepository

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        """Bind the repository to this transaction's connection."""
        self.notifications = NotifyRepository(conn)
