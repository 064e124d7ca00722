"""The unit of work: one transaction, the events it causes and the messages it has handled.

A use case opens one, changes state through ``uow.conn`` (or the repositories a
service's own unit of work adds), stages the events it causes with
:meth:`UnitOfWork.publish`, and asks the inbox whether a message was handled
before (:meth:`UnitOfWork.first_time`). Leaving the ``async with`` block without
an error writes the staged events to the outbox in the same transaction,
commits, and wakes the outbox relay; an error rolls everything back, events and
inbox keys included. Nobody calls "wake the relay" or "first time?" by hand.

Each event is checked against what the service declared it publishes
(:meth:`shared.service.Service.publishes`) and against the subject's contract
model, so the AsyncAPI document derived from those declarations cannot drift
from what is sent.

Tests of a service layer use :class:`tests.unit.fakes.FakeUnitOfWork`, which has
the same surface without a database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
from pydantic import BaseModel

from shared import outbox
from shared.contracts.subjects import contract_for


class UndeclaredPublication(LookupError):
    """An event on a subject the service did not declare, or of the wrong contract model."""


class Publications:
    """The subjects one service publishes, declared once; checked on every staged event."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.subjects: list[str] = []

    def declare(self, *subjects: str) -> None:
        for subject in subjects:
            contract_for(subject)  # an uncontracted subject is a bug at start-up, not at the first event
            if subject not in self.subjects:
                self.subjects.append(subject)

    def check(self, subject: str, event: BaseModel) -> None:
        if subject not in self.subjects:
            raise UndeclaredPublication(f"{self.service} does not declare that it publishes {subject}")
        model = contract_for(subject)
        if not isinstance(event, model):
            raise UndeclaredPublication(f"{subject} carries {model.__name__}, not {type(event).__name__}")


class Inbox:
    """Messages already handled, by (consumer, key), in the service's ``inbox`` table.

    The key is the sender's own id where it has one (a unit's action id, an
    event id), so a message republished under another ``Nats-Msg-Id`` is still
    recognised.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def first_time(self, consumer: str, keys: Iterable[str]) -> set[str]:
        """Record ``keys`` as handled by ``consumer``; returns those not handled before."""
        unique = sorted(set(keys))  # sorted: concurrent transactions take the key locks in one order
        if not unique:
            return set()
        rows = await self.conn.fetch(
            "INSERT INTO inbox (consumer, key) SELECT $1, k FROM unnest($2::text[]) AS k ORDER BY k "
            "ON CONFLICT DO NOTHING RETURNING key",
            consumer, unique,
        )
        return {r["key"] for r in rows}

    async def seen(self, consumer: str, key: str) -> bool:
        """Whether ``key`` was handled by ``consumer``, without recording it."""
        return bool(await self.conn.fetchval("SELECT true FROM inbox WHERE consumer = $1 AND key = $2",
                                             consumer, key))


class UnitOfWork:
    """One transaction of one service: state, outbox and inbox commit together or not at all."""

    def __init__(self, service: str, pool: asyncpg.Pool, publications: Publications,
                 on_commit: Callable[[], None] | None = None) -> None:
        self.service = service
        self.pool = pool
        self.publications = publications
        self.on_commit = on_commit
        self.conn: asyncpg.Connection | None = None
        self.inbox: Inbox | None = None
        self.staged: list[tuple[str, BaseModel]] = []
        self.committed: list[tuple[str, BaseModel]] = []
        self._tx: Any = None

    async def __aenter__(self) -> UnitOfWork:
        self.conn = await self.pool.acquire()
        try:
            self._tx = self.conn.transaction()
            await self._tx.__aenter__()
        except BaseException:
            await self.pool.release(self.conn)
            raise
        self.inbox = Inbox(self.conn)
        self.staged = []
        self.open_repositories(self.conn)
        return self

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        """Hook for a service's own unit of work: build its repositories on ``conn``."""

    async def __aexit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    await outbox.put_many(self.conn, self.service, self.staged)
                except BaseException as put_failed:
                    await self._tx.__aexit__(type(put_failed), put_failed, put_failed.__traceback__)
                    raise
            await self._tx.__aexit__(exc_type, exc, tb)  # commits, or rolls back on an error
        finally:
            await self.pool.release(self.conn)
            self.conn = None
        if exc_type is None:
            self.committed, self.staged = self.staged, []
            if self.committed and self.on_commit:
                self.on_commit()

    def publish(self, subject: str, event: BaseModel) -> None:
        """Stage ``event`` on ``subject``: it reaches JetStream after, and only after, the commit."""
        self.publications.check(subject, event)
        self.staged.append((subject, event))

    def publish_all(self, events: Sequence[tuple[str, BaseModel]]) -> None:
        for subject, event in events:
            self.publish(subject, event)

    async def first_time(self, consumer: str, keys: Iterable[str]) -> set[str]:
        """The keys ``consumer`` has not handled before, now recorded as handled (with this transaction)."""
        return await self.inbox.first_time(consumer, keys)

    async def first(self, consumer: str, key: str) -> bool:
        """Whether ``key`` is new to ``consumer`` (and records it)."""
        return bool(await self.first_time(consumer, [key]))
