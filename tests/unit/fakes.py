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


class FakeRouting:
    """Dispatch's ``RoutingRepository`` in memory: appeals' texts, labelled examples (once per key), versions."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.examples: dict[str, tuple[int, object]] = {}  # key → (example_id, LabelledExample)
        self.versions: dict[str, tuple] = {}
        self.routed: dict[str, str] = {}

    async def keep_texts(self, texts) -> None:
        for appeal_id, content in texts:
            self.texts.setdefault(appeal_id, content)

    async def text_of(self, appeal_id):
        return self.texts.get(appeal_id)

    async def add_example(self, key, example, actor=None):  # noqa: ARG002
        if key in self.examples:
            return None
        from dataclasses import replace

        example_id = len(self.examples) + 1
        self.examples[key] = (example_id, replace(example, example_id=example_id))
        return example_id

    async def last_example_id(self) -> int:
        return len(self.examples)

    async def examples_up_to(self, last):
        return [ex for i, ex in sorted(self.examples.values(), key=lambda v: v[0]) if i <= last]

    async def record_version(self, version, config_hash, last, examples, training_ms) -> None:
        self.versions.setdefault(version, (config_hash, last, examples, training_ms))

    async def mark_routed(self, versions) -> None:
        self.routed.update(versions)
