"""The delivery workers: one per channel, so a slow or failing channel never holds up the others.

Each worker is a background task of every replica. A round:

1. claims up to ``batch`` due messages of its channel (pending, ``next_attempt_at``
   and ``not_before`` passed) with ``FOR UPDATE SKIP LOCKED`` in one short
   transaction, taking a lease of twice the channel timeout and bumping the row's
   claim counter (the fencing token);
2. sends them concurrently, outside any transaction, each under its stable
   notification id (the SMS gateway's ``id``, the e-mail's ``Message-ID``);
3. records each outcome in its own short transaction, only if the claim still
   holds: the attempt in ``delivery_attempts``; delivered → ``ct.notify.delivered``
   in the outbox; a retryable error → another attempt after back-off with jitter;
   a final error or the last attempt → ``ct.notify.failed``.

A worker that dies mid-send leaves the lease to run out; the next claim (of any
replica) sends again under the same id, which the gateway drops as a duplicate.
A worker stopped mid-send gives its rows back at once. Workers wake after a
planning commit and poll every ``poll_interval`` seconds, so messages deferred by
quiet hours go at their time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from services.notify import domain, store
from services.notify.channels import DeliveryError
from services.notify.config import CHANNELS, Context
from services.notify.metrics import NOTIFICATIONS, SEND_SECONDS
from shared import clock, outbox
from shared.contracts import NotificationDelivered, NotificationFailed, subjects
from shared.service import Service

log = logging.getLogger("coffeetime.notify.delivery")
SERVICE = "notify"

BATCH = 16
"""Messages a worker claims and sends concurrently per round."""
POLL_INTERVAL_S = 0.25
"""Longest pause between rounds when nothing wakes the worker."""
MAX_INTERRUPTED = 3
"""Claims cut short (crash, stop) tolerated beyond max_attempts before a message is given up."""


def register(service: Service, ctx: Context) -> None:
    """Add one delivery worker per channel to the service's background tasks."""
    for channel in CHANNELS:
        service.background.append(DeliveryWorker(ctx, channel).task())


class DeliveryWorker:
    """Delivers the due messages of one channel."""

    def __init__(self, ctx: Context, channel: str, *, batch: int = BATCH,
                 poll_interval: float = POLL_INTERVAL_S) -> None:
        self.ctx = ctx
        self.channel = channel
        self.batch = batch
        self.poll_interval = poll_interval

    def task(self):
        """The worker as a background task of :class:`~shared.service.Service`, named after its channel."""

        async def deliver(service: Service) -> None:
            await self.run(service)

        deliver.__name__ = f"deliver_{self.channel}"
        deliver.worker = self  # type: ignore[attr-defined] - for operations tools and tests
        return deliver

    async def run(self, service: Service) -> None:
        """The background task: deliver what is due, then wait for a wake-up or the next poll."""
        wake = self.ctx.wake_events[self.channel]
        while True:
            wake.clear()
            try:
                sent = await self.deliver_due(service)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - rows stay pending; their leases run out; retry
                log.warning("delivery round failed", extra={"channel": self.channel, "error": repr(exc)})
                sent = 0
                await asyncio.sleep(0.5)
            if sent >= self.batch:
                continue  # more may be due: no pause
            try:
                await asyncio.wait_for(wake.wait(), timeout=self.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def deliver_due(self, service: Service) -> int:
        """One round: claim, send, record. Returns the number of messages attempted."""
        policy = self.ctx.rules.delivery
        now = clock.now()
        lease_until = now + timedelta(seconds=policy.timeout_seconds * 2)
        async with service.pool.acquire() as conn:
            claims = await store.claim_due(conn, self.channel, now, lease_until, self.batch)
        results = await asyncio.gather(*(self._attempt(service, c) for c in claims), return_exceptions=True)
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, Exception):
                # the outcome was not recorded: the lease runs out and the same id is sent again
                log.warning("recording a delivery outcome failed", extra={
                    "channel": self.channel, "notification_id": claim.notification_id, "error": repr(result)})
        return len(claims)

    async def _attempt(self, service: Service, claim: store.Claim) -> None:
        policy = self.ctx.rules.delivery
        if claim.claim_no > policy.max_attempts + MAX_INTERRUPTED:
            outcome = domain.AttemptOutcome("failed", error=f"gave up: {claim.claim_no - 1} attempts, "
                                                            "several cut short before their outcome was known")
            await self._record(service, claim, outcome, 0)
            return
        started = time.perf_counter()
        error, retryable = None, False
        try:
            # the clients bound each request; this bounds the whole attempt (SMTP runs in a thread)
            async with asyncio.timeout(policy.timeout_seconds * 1.5):
                await self.ctx.channels.send(claim)
        except DeliveryError as exc:
            error, retryable = exc.reason, exc.retryable
        except TimeoutError:
            error, retryable = f"{self.channel} timed out after {policy.timeout_seconds * 1.5:g} s", True
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back(service, claim))
            raise
        except Exception as exc:  # noqa: BLE001 - a client fault: bounded by max_attempts like any retryable error
            log.exception("channel client raised unexpectedly", extra={"channel": self.channel,
                                                                       "notification_id": claim.notification_id})
            error, retryable = f"{type(exc).__name__}: {exc}", True
        elapsed = time.perf_counter() - started
        SEND_SECONDS.labels(self.channel).observe(elapsed)
        outcome = domain.after_attempt(claim.attempt, clock.now(), policy, error=error, retryable=retryable)
        await self._record(service, claim, outcome, int(elapsed * 1000))

    async def _record(self, service: Service, claim: store.Claim, outcome: domain.AttemptOutcome,
                      duration_ms: int) -> None:
        now = clock.now()
        async with service.pool.acquire() as conn, conn.transaction():
            current = await store.record_outcome(conn, claim, outcome, now)
            await store.add_attempt(conn, claim, now, outcome, duration_ms)
            if current and outcome.result != "retried":
                await outbox.put(conn, SERVICE, *self._outcome_event(claim, outcome, now))
        recipient = domain.mask_address(self.channel, claim.address)
        if not current:
            log.warning("outcome of a claim that expired meanwhile kept in the attempt log only",
                        extra={"notification_id": claim.notification_id, "channel": self.channel,
                               "claim": claim.claim_no, "outcome": outcome.result})
            return
        NOTIFICATIONS.labels(self.channel, outcome.result).inc()
        if outcome.result == "retried":
            return
        service.wake_outbox()
        if outcome.result == "failed":
            log.warning("notification failed for good", extra={
                "notification_id": claim.notification_id, "channel": self.channel, "recipient": recipient,
                "attempts": claim.attempt, "error": outcome.error})

    def _outcome_event(self, claim: store.Claim, outcome: domain.AttemptOutcome,
                       now: datetime) -> tuple[str, NotificationDelivered | NotificationFailed]:
        common = dict(
            event_id=domain.outcome_event_id(claim.notification_id, outcome.result),
            occurred_at=now, appeal_id=claim.appeal_id or "", correlation_id=claim.correlation_id, actor=SERVICE,
            notification_id=claim.notification_id, cause_event_id=claim.cause_event_id, channel=claim.channel,
            recipient=domain.mask_address(claim.channel, claim.address), template=claim.template,
            attempts=claim.attempt,
        )
        if outcome.result == "delivered":
            return subjects.NOTIFY_DELIVERED, NotificationDelivered(**common)
        return subjects.NOTIFY_FAILED, NotificationFailed(**common, error=outcome.error or "")

    async def _give_back(self, service: Service, claim: store.Claim) -> None:
        """Stopped mid-send: release the lease so the next attempt (same id) need not wait for it."""
        try:
            async with asyncio.timeout(2):
                async with service.pool.acquire() as conn:
                    await store.release(conn, claim, clock.now())
        except Exception:  # noqa: BLE001 - the lease runs out by itself
            pass
