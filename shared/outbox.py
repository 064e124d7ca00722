"""The transactional outbox: events commit with the state change, then reach JetStream.

``put`` writes an event row in the caller's transaction. The relay publishes rows
in order with ``Nats-Msg-Id`` = the row id (JetStream drops a duplicate inside its
window) and deletes them once the server acknowledged. A crash between publish
and delete publishes the row again under the same id: harmless. Replicas share
the work with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

import asyncpg
from nats.js import JetStreamContext
from pydantic import BaseModel

from shared import metrics

log = logging.getLogger("coffeetime.outbox")

PUBACK_TIMEOUT_S = 5.0
"""Longest wait for a relayed row's PubAck; a row without one stays and goes again under the same id."""


def new_event_id(service: str) -> str:
    return f"{service[:3]}-{uuid.uuid4().hex}"


async def put(conn: asyncpg.Connection, service: str, subject: str, event: BaseModel) -> str:
    """Stage one event in the current transaction; returns its id (its future Nats-Msg-Id)."""
    return (await put_many(conn, service, [(subject, event)]))[0]


async def put_many(conn: asyncpg.Connection, service: str, items: Iterable[tuple[str, BaseModel]]) -> list[str]:
    """Stage events in the current transaction, in order, in one statement; returns their ids.

    One ``INSERT ... SELECT FROM unnest`` for the batch (``executemany`` ran the insert
    once per row: two of escalation's rows per order, issue 12), the rows numbered in
    the order given, which is the order the relay publishes them in.
    """
    ids, subjects, payloads = [], [], []
    for subject, event in items:
        if getattr(event, "event_id", None) == "":
            event.event_id = new_event_id(service)
        ids.append(getattr(event, "event_id", None) or new_event_id(service))
        subjects.append(subject)
        payloads.append(event.model_dump_json().encode())
    if ids:
        await conn.execute(
            "INSERT INTO outbox (id, subject, payload) "
            "SELECT i, s, p FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS x(i, s, p, n) "
            "ORDER BY n",
            ids, subjects, payloads,
        )
    return ids


class OutboxRelay:
    """Publishes staged events; woken after each commit, and polling for what others left."""

    def __init__(self, service: str, pool: asyncpg.Pool, js: JetStreamContext, batch: int = 500,
                 poll_interval: float = 1.0) -> None:
        self.service = service
        self.pool = pool
        self.js = js
        self.batch = batch
        self.poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stats_task: asyncio.Task | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")
        self._stats_task = asyncio.create_task(self._stats(), name=f"outbox-stats-{self.service}")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in (self._task, self._stats_task):
            if task:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        # one last round so what this process committed goes out before it exits
        try:
            await asyncio.wait_for(self.relay_once(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - the rows stay and another round publishes them
            log.warning("final outbox round failed; rows stay for the next start", extra={"error": str(exc)})

    async def _run(self) -> None:
        while not self._stopping:
            # cleared before the round: a commit during the round wakes the next one at once
            self._wake.clear()
            try:
                n = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep relaying; rows are safe in the table
                log.warning("outbox relay round failed", extra={"error": str(exc)})
                n = 0
                await asyncio.sleep(0.5)
            if n >= self.batch:
                continue  # more waiting: no pause
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass

    async def relay_once(self) -> int:
        """Publish up to one batch of staged events; returns how many went out."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    "SELECT seq, id, subject, payload, created_at FROM outbox ORDER BY seq "
                    "LIMIT $1 FOR UPDATE SKIP LOCKED",
                    self.batch,
                )
                if not rows:
                    return 0
                results = await self._publish(rows)
                done = [r["seq"] for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)]
                failed = [res for res in results if isinstance(res, BaseException)]
                if done:
                    await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", done)
        now = time.time()
        for r, res in zip(rows, results, strict=True):
            if not isinstance(res, BaseException):
                metrics.OUTBOX_RELAY_LAG.labels(self.service).observe(max(0.0, now - r["created_at"].timestamp()))
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(done))
        if failed:
            log.warning("outbox publish failed; will retry", extra={"failed": len(failed), "error": str(failed[0])})
        return len(done)

    async def _publish(self, rows) -> list:
        """Publish ``rows`` in order on the one connection and wait for their PubAcks (at most ``PUBACK_TIMEOUT_S``).

        ``publish_async``: one message and one future each, the PubAcks arriving on the
        context's one reply subscription (``js.publish`` made a request, a reply inbox
        token and a timeout task per row: profiled, a third of a relay round). Returns
        per row the PubAck or the exception; a row without its PubAck in time counts as
        failed and stays for the next round, which republishes it under the same id.
        """
        futures: list[asyncio.Future] = []
        results: list = [None] * len(rows)
        try:
            for r in rows:
                futures.append(await self.js.publish_async(r["subject"], r["payload"],
                                                           headers={"Nats-Msg-Id": r["id"]}))
        except Exception as exc:  # noqa: BLE001 - e.g. disconnected: this row and the rest wait for the next round
            for i in range(len(futures), len(rows)):
                results[i] = exc
        if futures:
            _, pending = await asyncio.wait(futures, timeout=PUBACK_TIMEOUT_S)
            for fut in pending:
                fut.cancel()  # releases its place among the context's pending publishes
        for i, fut in enumerate(futures):
            if fut.cancelled():
                results[i] = TimeoutError(f"no PubAck within {PUBACK_TIMEOUT_S:g} s")
            else:
                results[i] = fut.exception() or fut.result()
        return results

    async def _stats(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    row = await conn.fetchrow(
                        "SELECT count(*) AS n, extract(epoch FROM clock_timestamp() - min(created_at)) AS age FROM outbox"
                    )
                metrics.OUTBOX_BACKLOG.labels(self.service).set(row["n"])
                metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(float(row["age"] or 0.0))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a gauge update is not worth a crash
                pass
            await asyncio.sleep(5)
