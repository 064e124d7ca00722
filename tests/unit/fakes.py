"""A unit of work without a database, for service-layer tests (cosmicpython's FakeUnitOfWork).

It has the surface of :class:`shared.unit_of_work.UnitOfWork`: ``publish``,
``first_time``, ``first``, ``staged`` and ``committed``; the publications are
checked against the service's declarations just as the real one does. A
service's fake adds its fake repositories in ``open_repositories``.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from shared.unit_of_work import Publications


class FakeUnitOfWork:
    def __init__(self, service: str, publishes: Iterable[str] = ()) -> None:
        self.service = service
        self.publications = Publications(service)
        self.publications.declare(*publishes)
        self.handled: set[tuple[str, str]] = set()
        self.staged: list[tuple[str, BaseModel]] = []
        self.committed: list[tuple[str, BaseModel]] = []
        self.commits = 0
        self.rollbacks = 0
        self.conn = None
        self._inbox_before: set[tuple[str, str]] = set()

    async def __aenter__(self) -> FakeUnitOfWork:
        self.staged = []
        self._inbox_before = set(self.handled)
        self.open_repositories(None)
        return self

    def open_repositories(self, conn) -> None:  # noqa: ARG002 - the real one builds repositories on conn
        """Hook: a service's fake unit of work binds its fake repositories here."""

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.committed.extend(self.staged)
            self.commits += 1
        else:
            self.handled = self._inbox_before  # the inbox rolls back with the transaction
            self.rollbacks += 1
        self.staged = []

    def publish(self, subject: str, event: BaseModel) -> None:
        self.publications.check(subject, event)
        self.staged.append((subject, event))

    def publish_all(self, events) -> None:
        for subject, event in events:
            self.publish(subject, event)

    async def first_time(self, consumer: str, keys: Iterable[str]) -> set[str]:
        fresh = {k for k in keys if (consumer, k) not in self.handled}
        self.handled |= {(consumer, k) for k in fresh}
        return fresh

    async def first(self, consumer: str, key: str) -> bool:
        return bool(await self.first_time(consumer, [key]))

    def published(self, subject: str | None = None) -> list[BaseModel]:
        """The committed events, optionally of one subject."""
        return [e for s, e in self.committed if subject is None or s == subject]
