"""The deadline scanner: fires the ladder steps whose time has come, each exactly once.

A background task of every replica. Each round claims up to ``batch`` due
steps with ``FOR UPDATE SKIP LOCKED`` (:data:`store.CLAIM_DUE_FIRINGS`), stages
their ``ct.deadline.warning`` / ``ct.appeal.escalated`` events (``uow.publish``) and
marks them fired, in one unit of work (:func:`use_cases.fire_due_steps`):

* replicas share the work: a step claimed by one is skipped by the others;
* a replica that dies mid-round rolls back: its steps are due again and the
  next round (of any replica) fires them; nothing is lost;
* a step is marked fired in the transaction that stages its event, and its
  event id is stable for (order, step): nothing fires twice.

After an outage (escalation down while steps fell due) the first rounds drain the
backlog oldest first (the claim orders by ``fire_at``; a round's steps fire by
time, then ladder order), each step once, and each event says how late it fired
(``fire_at``, ``late_seconds``; the row keeps ``fire_at`` and ``fired_at``; the
histogram ``coffeetime_escalation_step_lateness_seconds``).

The cost of a round follows the due steps, not the open orders: the claim
reads a partial index of the pending steps in time order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from services.escalation import use_cases
from services.escalation.config import SCAN_BATCH, Context
from services.escalation.metrics import ESCALATIONS, FIRING_LAG, STEP_LATENESS
from shared import clock
from shared.service import Service

log = logging.getLogger("coffeetime.escalation.scanner")


class DeadlineScanner:
    """Fires due steps every ``interval`` seconds; drains a backlog in consecutive batches."""

    def __init__(self, ctx: Context, interval: float, batch: int = SCAN_BATCH) -> None:
        self.ctx = ctx
        self.interval = interval
        self.batch = batch
        self.replica = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rounds = 0
        self.fired = 0

    async def run(self, service: Service) -> None:
        """The background task: scan, sleep, scan again; an error is logged and the next round retries."""
        while True:
            try:
                while await self.fire_due(service) >= self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the steps stay due; the next round fires them
                log.warning("scan round failed; retrying", extra={"error": repr(exc)})
            self.rounds += 1
            await asyncio.sleep(self.interval)

    async def fire_due(self, service: Service) -> int:
        """One unit of work: claim the due steps, stage their events, mark them fired. Returns how many fired."""
        now = clock.now()
        async with service.unit_of_work() as uow:
            fired = await use_cases.fire_due_steps(uow, self.ctx, now, self.batch, self.replica)
        if not fired:
            return 0
        for step in fired:
            ESCALATIONS.labels(step.level).inc()
            STEP_LATENESS.observe(max(0.0, (now - step.fire_at).total_seconds()))
        FIRING_LAG.set(max(0.0, (now - max(step.fire_at for step in fired)).total_seconds()))
        self.fired += len(fired)
        log.info("ladder steps fired", extra={"count": len(fired), "replica": self.replica,
                                              "levels": sorted({step.level for step in fired})})
        return len(fired)
