"""The delivery workers: one per channel, so a slow or failing channel never holds up the others.

Each worker is a background task of every replica. A round:

1. claims up to ``batch`` due messages of its channel (pending, ``next_attempt_at``
   and ``not_before`` passed) with ``FOR UPDATE SKIP LOCKED`` in one short
   transaction, taking a lease of twice the channel timeout and bumping the row's
   claim counter (the fencing token);
2. sends them outside any transaction, each under its stable notification id (the
   SMS gateway's ``id``, the e-mail's ``Message-ID``): the HTTP channels up to
   ``concurrency`` at a time (the size of the channel's own HTTP pool), e-mail
   over one SMTP session in one worker thread. While a round runs longer than half
   its lease (a slow channel), the lease of its rows is extended;
3. records every outcome of the round in ONE transaction, each only if its claim
   still holds: one update of the notifications, one insert of the attempts into
   ``delivery_attempts``, the ``ct.notify.delivered`` / ``ct.notify.failed`` events
   staged on the unit of work (:func:`use_cases.record_round`); a retryable error → another attempt after back-off with jitter;
   a final error or the last attempt → ``ct.notify.failed``.

A worker that dies mid-send leaves the lease to run out; the next claim (of any
replica) sends again under the same id, which the gateway drops as a duplicate.
A worker stopped mid-round records what it knows and gives the other rows back at
once (a message never handed to its channel gets its claim back as well). Workers
wake after a planning commit and poll every ``poll_interval`` seconds, so messages
deferred by quiet hours go at their time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.notify import domain, store, use_cases
from services.notify.channels import Attempt
from services.notify.config import CHANNELS, HTTP_CONCURRENCY, Context
from services.notify.metrics import NOTIFICATIONS, SEND_SECONDS
from shared import clock
from shared.service import Service

log = logging.getLogger("coffeetime.notify.delivery")

BATCH = 128
"""Messages a worker claims per round (sent concurrently, their outcomes recorded in one transaction)."""
RECORD_RETRIES = (0.2, 1.0)
"""Pauses before trying a round's recording transaction again (it is idempotent); then the leases run out."""
POLL_INTERVAL_S = 0.25
"""Longest pause between rounds when nothing wakes the worker."""
JITTER = random.Random()
"""Where the back-off jitter of retries comes from (the domain takes it as a parameter)."""
MAX_INTERRUPTED = 3
"""Claims cut short (crash, stop) tolerated beyond max_attempts before a message is given up."""


def register(service: Service, ctx: Context) -> None:
    """Add one delivery worker per channel to the service's background tasks."""
    for channel in CHANNELS:
        service.background.append(DeliveryWorker(ctx, channel).task())


class DeliveryWorker:
    """Delivers the due messages of one channel."""

    def __init__(self, ctx: Context, channel: str, *, batch: int = BATCH,
                 poll_interval: float = POLL_INTERVAL_S, concurrency: int = HTTP_CONCURRENCY) -> None:
        self.ctx = ctx
        self.channel = channel
        self.batch = batch
        self.poll_interval = poll_interval
        self.concurrency = concurrency

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
            except TimeoutError:
                pass

    async def deliver_due(self, service: Service) -> int:
        """One round: claim, send, record. Returns the number of messages claimed."""
        policy = self.ctx.rules.delivery
        lease = timedelta(seconds=policy.timeout_seconds * 2)
        now = clock.now()
        async with service.pool.acquire() as conn:
            claims = await store.claim_due(conn, self.channel, now, now + lease, self.batch)
        if not claims:
            return 0
        given_up = [c for c in claims if c.claim_no > policy.max_attempts + MAX_INTERRUPTED]
        attempts = [Attempt(c) for c in claims if c.claim_no <= policy.max_attempts + MAX_INTERRUPTED]
        try:
            if attempts:
                keeper = asyncio.create_task(self._keep_leases(service, [a.message for a in attempts], lease),
                                             name=f"notify-lease-{self.channel}")
                try:
                    await self.ctx.channels.send_round(self.channel, attempts, concurrency=self.concurrency,
                                                       attempt_timeout=policy.timeout_seconds * 1.5)
                finally:
                    keeper.cancel()
                    await asyncio.wait([keeper])
        except asyncio.CancelledError:
            # stopped mid-round: keep the outcomes known, give the other rows back at once (same id next time)
            await self._finish_while_stopping(asyncio.ensure_future(
                self._record_round(service, given_up, attempts, retries=())))
            raise
        recording = asyncio.ensure_future(self._record_round(service, given_up, attempts))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            await self._finish_while_stopping(recording)  # a short transaction: let it end
            raise
        return len(claims)

    @staticmethod
    async def _finish_while_stopping(recording: asyncio.Future, timeout: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(recording)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the leases run out by themselves
            pass

    async def _keep_leases(self, service: Service, claims: Sequence[store.Claim], lease: timedelta) -> None:
        """While the round runs longer than half its lease (a slow channel), extend the lease of its rows."""
        while True:
            await asyncio.sleep(lease.total_seconds() / 2)
            try:
                async with service.pool.acquire() as conn:
                    await store.extend_leases(conn, claims, clock.now() + lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the next period tries again; at worst a lease runs out
                log.warning("extending delivery leases failed", extra={"channel": self.channel, "error": repr(exc)})

    def _outcomes(self, given_up: Sequence[store.Claim], attempts: Sequence[Attempt],
                  now: datetime) -> list[store.Recorded]:
        policy = self.ctx.rules.delivery
        recorded = [
            store.Recorded(c, domain.AttemptOutcome("failed", error=f"gave up: {c.claim_no - 1} attempts, several cut "
                                                                    "short before their outcome was known"), 0)
            for c in given_up
        ]
        observe = SEND_SECONDS.labels(self.channel).observe
        for a in attempts:
            if not a.done:
                continue
            observe(a.seconds)
            error = a.error
            outcome = domain.after_attempt(a.message.attempt, now, policy,
                                           error=error.reason if error is not None else None,
                                           retryable=error.retryable if error is not None else False,
                                           rng=JITTER)
            recorded.append(store.Recorded(a.message, outcome, int(a.seconds * 1000)))
        return recorded

    async def _record_round(self, service: Service, given_up: Sequence[store.Claim], attempts: Sequence[Attempt],
                            retries: Sequence[float] = RECORD_RETRIES) -> None:
        """Record every outcome of the round in one transaction; give back the rows whose outcome is unknown."""
        now = clock.now()
        recorded = self._outcomes(given_up, attempts, now)
        interrupted = [a.message for a in attempts if a.started and not a.done]
        unsent = [a.message for a in attempts if not a.started]
        pauses = iter(retries)
        while True:
            try:
                current = await use_cases.record_round(service.unit_of_work(), recorded, now,
                                                       interrupted=interrupted, unsent=unsent)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - idempotent: tried again, else the leases run out (same ids)
                pause = next(pauses, None)
                if pause is None:
                    log.warning("recording a delivery round failed; its leases run out and the same ids go again",
                                extra={"channel": self.channel, "messages": len(recorded), "error": repr(exc)})
                    return
                await asyncio.sleep(pause)
        self._report(recorded, current)

    def _report(self, recorded: Sequence[store.Recorded], current: set[str]) -> None:
        for r in recorded:
            claim, outcome = r.claim, r.outcome
            if claim.notification_id not in current:
                log.warning("outcome of a claim that expired meanwhile kept in the attempt log only",
                            extra={"notification_id": claim.notification_id, "channel": self.channel,
                                   "claim": claim.claim_no, "outcome": outcome.result})
                continue
            NOTIFICATIONS.labels(self.channel, outcome.result).inc()
            if outcome.result == "failed":
                log.warning("notification failed for good", extra={
                    "notification_id": claim.notification_id, "channel": self.channel,
                    "recipient": domain.mask_address(self.channel, claim.address),
                    "attempts": claim.attempt, "error": outcome.error})
