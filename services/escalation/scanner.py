"""The deadline scanner: fires the ladder steps whose time has come, each exactly once.

A background task of every replica. Each round claims up to ``batch`` due
steps with ``FOR UPDATE SKIP LOCKED`` (:data:`store.CLAIM_DUE_FIRINGS`), stages
their ``ct.deadline.warning`` / ``ct.appeal.escalated`` events in the outbox and
marks them fired, in one transaction:

* replicas share the work: a step claimed by one is skipped by the others;
* a replica that dies mid-round rolls back: its steps are due again and the
  next round (of any replica) fires them; nothing is lost;
* a step is marked fired in the transaction that stages its event, and its
  event id is stable for (order, step): nothing fires twice.

The cost of a round follows the due steps, not the open orders: the claim
reads a partial index of the pending steps in time order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import datetime

import asyncpg

from services.escalation import domain, store
from services.escalation.config import SCAN_BATCH, Context
from services.escalation.handlers import SERVICE
from services.escalation.metrics import ESCALATIONS, FIRING_LAG
from shared import clock, outbox
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.scanner")


def _ladder_position(level: str) -> int:
    return domain.LADDER.index(level) if level in domain.LADDER else len(domain.LADDER)


class DeadlineScanner:
    """Fires due steps every ``interval`` seconds; drains a backlog in consecutive batches."""

    def __init__(self, ctx: Context, interval: float, batch: int = SCAN_BATCH) -> None:
        self.ctx = ctx
        self.interval = interval
        self.batch = batch
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.known_units = frozenset(u.unit_code for u in ctx.district.units)
        self.rounds = 0
        self.fired = 0

    async def run(self, service: Service) -> None:
        """The background task: scan, sleep, scan again; an error is logged and the next round retries."""
        while True:
            try:
                while True:
                    fired = await self.fire_due(service.pool)
                    if fired:
                        service.wake_outbox()
                    if fired < self.batch:
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the steps stay due; the next round fires them
                log.warning("scan round failed; retrying", extra={"error": repr(exc)})
            self.rounds += 1
            await asyncio.sleep(self.interval)

    async def fire_due(self, pool: asyncpg.Pool) -> int:
        """One transaction: claim the due steps, stage their events, mark them fired. Returns how many fired."""
        now = clock.now()
        async with pool.acquire() as conn, conn.transaction():
            claimed = await store.claim_due(conn, now, self.batch)
            if not claimed:
                return 0
            stored = await store.load_orders(conn, {row["order_id"] for row in claimed})
            staged, fired = [], []
            for row in sorted(claimed, key=lambda r: (r["fire_at"], _ladder_position(r["level"]), r["firing_id"])):
                facts = stored[row["order_id"]][0] if row["order_id"] in stored else domain.OrderFacts(
                    order_id=row["order_id"], appeal_id=row["appeal_id"], unit_code=row["unit_code"])
                subject, event = self._event(row, facts, now)
                staged.append((subject, event))
                fired.append((row["firing_id"], event.event_id))
            await outbox.put_many(conn, SERVICE, staged)
            await store.mark_fired(conn, fired, now, self.replica)
        for row in claimed:
            ESCALATIONS.labels(row["level"]).inc()
        FIRING_LAG.set(max(0.0, (now - max(row["fire_at"] for row in claimed)).total_seconds()))
        self.fired += len(claimed)
        log.info("ladder steps fired", extra={"count": len(claimed), "replica": self.replica,
                                              "levels": sorted({row["level"] for row in claimed})})
        return len(claimed)

    def _event(self, row: asyncpg.Record, facts: domain.OrderFacts, now: datetime):
        district = self.ctx.district
        if facts.unit_code not in self.known_units:
            log.warning("unit not in the district configuration; the lead unit is told in its place",
                        extra={"unit_code": facts.unit_code, "order_id": facts.order_id})
        targets = domain.targets_for_order(row["level"], facts.unit_code, district, facts.category, row["clock"])
        return domain.step_event(facts, row["level"], row["clock"], row["due_at"], row["step_key"], targets, now,
                                 requested_reason=(row["payload"] or {}).get("reason"))
