"""Dispatch's unit of work and its repository: appeals and their work orders, over ``store.py``'s SQL.

:class:`DispatchUnitOfWork` is what ``service.unit_of_work()`` builds for
dispatch: the shared transaction, outbox and inbox, plus ``uow.appeals``. The use
cases (``use_cases.py``) reach the database only through ``uow.appeals``, so a
fake repository (``tests/unit/test_dispatch_service_layer.py``) stands in for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.dispatch import store
from services.dispatch.domain import AppealState, WorkOrder
from services.dispatch.domain.following import Follower
from services.dispatch.domain.text_model import LabelledExample
from shared.contracts.events import AppealRegistered
from shared.unit_of_work import UnitOfWork


class AppealRepository:
    """The appeals dispatch keeps and their work orders, on one connection (inside the unit of work's transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_new(self, appeals: Sequence[tuple[AppealState, dict]]) -> set[str]:
        """Insert appeals seen for the first time, each with its routing record; the ids that were new."""
        return await store.insert_new_appeals(self.conn, list(appeals))

    async def lock(self, appeal_id: str) -> AppealState | None:
        """The appeal, locked until the transaction ends (actions on one appeal run one at a time)."""
        return await store.lock_appeal(self.conn, appeal_id)

    async def appeal_of_order(self, order_id: str) -> str | None:
        """The appeal an order belongs to, or None for an unknown order."""
        return await store.appeal_of_order(self.conn, order_id)

    async def order(self, order_id: str) -> WorkOrder | None:
        """One work order, or None."""
        return await store.load_order(self.conn, order_id)

    async def orders_of(self, appeal_id: str) -> list[WorkOrder]:
        """Every order of an appeal, by id."""
        return await store.orders_of(self.conn, appeal_id)

    async def rated_order(self, appeal_id: str) -> WorkOrder | None:
        """The appeal's current lead order: the one the enterprise rates."""
        return await store.rated_order(self.conn, appeal_id)

    async def save(self, appeal: AppealState | None, orders: Sequence[WorkOrder],
                   reasons: dict[str, list[str]] | None = None) -> None:
        """Write an appeal (when given) and orders; ``reasons`` (order id → why routed there) is kept for new orders."""
        if appeal is not None:
            await store.save_appeal(self.conn, appeal)
        await store.save_orders(self.conn, list(orders), reasons)

    async def record_deadlines(self, deadlines: Sequence[tuple[str, str, datetime, datetime]]) -> None:
        """(order_id, clock, due_at, set_at): each kept unless a newer one was applied."""
        await store.record_deadlines(self.conn, list(deadlines))

    async def record_escalations(self, levels: Sequence[tuple[str, str]]) -> None:
        """(order_id, level): the ladder step each order reached."""
        await store.record_escalations(self.conn, list(levels))

    async def awaiting_rating_since(self, cutoff: datetime) -> list[str]:
        """Appeals whose lead order was replied before ``cutoff`` and is still unrated (a batch of them)."""
        return await store.awaiting_rating_since(self.conn, cutoff)

    async def list_orders(self, unit_code: str | None, status: str | None, as_of: datetime, limit: int,
                          after: tuple[int, str, str] | None = None, order_id: str | None = None,
                          paused: bool | None = None) -> list[dict]:
        """A page of orders as rows (see :func:`store.list_orders`)."""
        rows = await store.list_orders(self.conn, unit_code, status, as_of, limit, order_id=order_id, after=after,
                                       paused=paused)
        return [dict(r) for r in rows]

    async def queued(self, limit: int, after: tuple[datetime, str] | None = None) -> list[dict]:
        """A page of the manual queue as rows (see :func:`store.queued_appeals`)."""
        return [dict(r) for r in await store.queued_appeals(self.conn, limit, after)]


class RoutingRepository:
    """What the routing model learns from: appeals' texts, the lead unit's corrections, the versions trained."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def keep_texts(self, texts: Sequence[tuple[str, str]]) -> None:
        """(appeal_id, content) of appeals started now, so a later correction can label the whole text."""
        await store.keep_texts(self.conn, list(texts))

    async def text_of(self, appeal_id: str) -> str | None:
        """An appeal's full content, or None when it was not kept."""
        return await store.text_of(self.conn, appeal_id)

    async def add_example(self, key: str, example: LabelledExample, actor: str | None = None) -> int | None:
        """Store a labelled example once per ``key`` (the action's); its id, or None when stored before."""
        return await store.add_example(self.conn, key, example.appeal_id, example.content, example.unit_code,
                                       example.source, actor)

    async def last_example_id(self) -> int:
        """The highest stored example id (0 when none)."""
        return await store.last_example_id(self.conn)

    async def examples_up_to(self, last: int) -> list[LabelledExample]:
        """Every stored example with an id up to ``last``, by id."""
        return [LabelledExample(r["content"], r["unit_code"], r["source"], r["example_id"], r["appeal_id"])
                for r in await store.examples_up_to(self.conn, last)]

    async def record_version(self, version: str, config_hash: str, last: int, examples: int,
                             training_ms: float) -> None:
        """Record a trained model version (idempotent)."""
        await store.record_version(self.conn, version, config_hash, last, examples, training_ms)

    async def mark_routed(self, versions: dict[str, str]) -> None:
        """order id → the model version that routed it."""
        await store.mark_routed(self.conn, versions)


class FollowerRepository:
    """Likely duplicates that follow their master (重复诉求并单): see :mod:`services.dispatch.domain.following`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, followers: Sequence[Follower]) -> None:
        """Keep new followers with their registrations (a split recorded before keeps its split)."""
        await store.add_followers(self.conn, [
            (f.appeal_id, f.master_appeal_id, f.similarity,
             f.registration.model_dump_json() if f.registration else "null") for f in followers])

    async def split_before(self, appeal_ids: Sequence[str]) -> set[str]:
        """The appeals among ``appeal_ids`` whose split arrived before their registration."""
        return await store.split_before(self.conn, list(appeal_ids)) if appeal_ids else set()

    async def lock(self, appeal_id: str) -> Follower | None:
        """A follower, locked for this transaction; None when it is none."""
        r = await store.lock_follower(self.conn, appeal_id)
        if r is None:
            return None
        registration = json.loads(r["registration"]) if isinstance(r["registration"], str) else r["registration"]
        return Follower(appeal_id=r["appeal_id"], master_appeal_id=r["master_appeal_id"], similarity=r["similarity"],
                        registration=AppealRegistered.model_validate(registration) if registration else None,
                        replied_order_id=r["replied_order_id"], replied_at=r["replied_at"], split_at=r["split_at"])

    async def split(self, appeal_id: str, master_appeal_id: str, at: datetime) -> bool:
        """Mark it split (or note the split of one not seen yet); False when it was split before."""
        return await store.record_split(self.conn, appeal_id, master_appeal_id, at)

    async def of_master(self, master_appeal_id: str) -> list[str]:
        """The appeals still following ``master_appeal_id``."""
        return await store.followers_of(self.conn, master_appeal_id)

    async def mark_replied(self, appeal_id: str, order_id: str, at: datetime) -> None:
        """The master's reply on ``order_id`` was sent to the follower."""
        await store.mark_replied(self.conn, appeal_id, order_id, at)

    async def awaiting_rating_since(self, cutoff: datetime) -> list[str]:
        """Open followers sent their master's reply before ``cutoff``."""
        return await store.followers_awaiting_rating(self.conn, cutoff)

    async def keep_routing(self, appeal_id: str, routing: dict) -> None:
        """The routing record of a follower routed on its own after a split."""
        await store.keep_routing(self.conn, appeal_id, routing)


class DispatchUnitOfWork(UnitOfWork):
    """The shared unit of work with dispatch's repositories: ``uow.appeals``, ``uow.routing`` and ``uow.followers``."""

    appeals: AppealRepository
    routing: RoutingRepository
    followers: FollowerRepository

    def open_repositories(self, conn: asyncpg.Connection) -> None:
        """Bind ``uow.appeals``, ``uow.routing`` and ``uow.followers`` to this transaction's connection."""
        self.appeals = AppealRepository(conn)
        self.routing = RoutingRepository(conn)
        self.followers = FollowerRepository(conn)
