"""The delivery workers: two per channel, so a slow or failing channel never holds up the others, and a
round of liaison messages in flight never delays an enterprise's receipt (the receipt lane: one worker
of each channel claims receipts only, the other everything, receipts first).

Each worker is a background task of every replica. A round:

1. claims up to ``batch`` due messages of its channel (pending, ``next_attempt_at``
   and ``not_before`` passed) with ``FOR UPDATE SKIP LOCKED`` in one short
   transaction, taking a lease of twice the channel timeout and bumping the row's
   claim counter (the fencing token);
2. sends them outside any transaction, each under its stable notification id (the
   SMS gateway's ``id``, the e-mail's ``Message-ID``): the HTTP channels up to
   ``concurrency`` at a time (the size of the channel's own HTTP pool), e-mail
   over one SMTP session in one worker thread. Before a message goes to its
   channel its attempt is logged as ``sending`` and committed (:class:`RoundBook`,
   ``concurrency`` messages per transaction, just ahead of the senders);
3. records the outcomes as they come, a transaction every :data:`RECORD_EVERY_S`
   or per ``concurrency`` outcomes, each only if its claim still holds: the
   notifications, the attempts in ``delivery_attempts``, the ``ct.notify.delivered`` /
   ``ct.notify.failed`` events staged on the unit of work (:func:`use_cases.record_round`);
   a retryable error → another attempt after back-off with jitter; a final error or
   the last attempt → ``ct.notify.failed``.

So a crash or a lost database repeats only the sends that were in flight: a message
is sent again only when its attempt is still ``sending`` (its outcome never
recorded), and that resend is counted in ``coffeetime_notification_resends_total``.
A message the channel accepted is never sent again while the process lives: when
PostgreSQL is unreachable the outcomes stay in memory and their transaction is
tried again with back-off, the leases of the round extended every quarter lease
meanwhile, for up to :data:`RECORD_PATIENCE_S`. A worker that dies mid-send leaves
the lease to run out; the next claim (of any replica) sends again under the same id.
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
from services.notify.config import CHANNELS, HTTP_CONCURRENCY, LANES, Context
from services.notify.metrics import NOTIFICATIONS, RESENDS, SEND_SECONDS, UNRECORDED
from shared import clock
from shared.service import Service

log = logging.getLogger("coffeetime.notify.delivery")

BATCH = 128
"""Messages a worker claims per round (sent concurrently, their outcomes recorded as they come)."""
RECORD_EVERY_S = 0.1
"""Longest wait of a known outcome for its recording transaction (sooner when ``concurrency`` outcomes wait):
a kill -9 repeats at most the sends of that last moment, and a round of 128 costs some ten transactions,
not one per message."""
RECORD_BACKOFF_S = (0.1, 0.2, 0.5, 1.0)
"""Pauses before trying a mark or a recording transaction again (both idempotent and fenced); then 1 s each."""
RECORD_PATIENCE_S = 600.0
"""How long known outcomes are kept in memory for PostgreSQL to come back before their leases are left to run out."""
POLL_INTERVAL_S = 0.25
"""Longest pause between rounds when nothing wakes the worker."""
JITTER = random.Random()
"""Where the back-off jitter of retries comes from (the domain takes it as a parameter)."""
MAX_INTERRUPTED = 3
"""Sends cut short with their outcome unknown (crash, lost database) tolerated before a message is given up."""


def register(service: Service, ctx: Context) -> None:
    """Add each channel's delivery workers (its receipt lane and the rest, :data:`LANES`) to the background tasks."""
    concurrency = ctx.settings.notify_http_concurrency
    for channel in CHANNELS:
        RESENDS.labels(channel)  # from 0, so the first resend after a start shows in increase()
        for receipts_only in LANES:
            service.background.append(
                DeliveryWorker(ctx, channel, concurrency=concurrency, receipts_only=receipts_only).task())


class DeliveryWorker:
    """Delivers the due messages of one channel: with ``receipts_only`` its receipts (the receipt lane), else all.

    The lane claims receipts in rounds of its own, so a receipt is sent while the
    channel's other worker still has a round of liaison messages in flight; that worker
    takes receipts too, first, when the lane is behind.
    """

    def __init__(self, ctx: Context, channel: str, *, batch: int = BATCH, poll_interval: float = POLL_INTERVAL_S,
                 concurrency: int = HTTP_CONCURRENCY, receipts_only: bool = False) -> None:
        self.ctx = ctx
        self.channel = channel
        self.batch = batch
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.receipts_only = receipts_only
        self.wake = ctx.wake_event(channel)

    def task(self):
        """The worker as a background task of :class:`~shared.service.Service`, named after its channel and lane."""

        async def deliver(service: Service) -> None:
            await self.run(service)

        deliver.__name__ = f"deliver_{self.channel}" + ("_receipts" if self.receipts_only else "")
        deliver.worker = self  # type: ignore[attr-defined] - for operations tools and tests
        return deliver

    async def run(self, service: Service) -> None:
        """The background task: deliver what is due, then wait for a wake-up or the next poll."""
        wake = self.wake
        while True:
            if asyncio.current_task().cancelling():
                # Python 3.11's wait_for can swallow a cancel that lands as its inner wait ends (a wake-up at the
                # moment of the stop): the service's stop then waited for this loop forever while the worker went
                # on claiming rows (seen in the suite). A cancel requested is a cancel taken.
                raise asyncio.CancelledError
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
        """One round: claim, then send and record as the sends go. Returns the number of messages claimed."""
        policy = self.ctx.rules.delivery
        lease = timedelta(seconds=policy.timeout_seconds * 2)
        now = clock.now()
        async with service.pool.acquire() as conn:
            claims = await store.claim_due(conn, self.channel, now, now + lease, self.batch,
                                           receipts_only=self.receipts_only)
        if not claims:
            return 0
        given_up = [c for c in claims if c.unknown > MAX_INTERRUPTED]
        attempts = [Attempt(c) for c in claims if c.unknown <= MAX_INTERRUPTED]
        book = RoundBook(self, service, claims, attempts, lease, now + lease)
        for c in given_up:
            book.add(store.Recorded(c, domain.AttemptOutcome(
                "failed", error=f"gave up: {c.unknown} sends cut short before their outcome was known"), 0))
        book.open()
        try:
            if attempts:
                await self.ctx.channels.send_round(self.channel, attempts, concurrency=self.concurrency,
                                                   attempt_timeout=policy.timeout_seconds * 1.5,
                                                   admit=book.admit, on_done=book.finished)
        except asyncio.CancelledError:
            # stopped mid-round: keep the outcomes known, give the other rows back at once (same id next time)
            await self._finish_while_stopping(asyncio.ensure_future(book.close(attempts)))
            raise
        closing = asyncio.ensure_future(book.close(attempts))
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await self._finish_while_stopping(closing)  # short transactions: let them end
            raise
        return len(claims)

    @staticmethod
    async def _finish_while_stopping(closing: asyncio.Future, timeout: float = 2.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(closing)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the leases run out by themselves
            closing.cancel()

    def outcome_of(self, attempt: Attempt, now: datetime) -> store.Recorded:
        """What a finished attempt leads to (delivered, a retry after back-off, failed), to record."""
        SEND_SECONDS.labels(self.channel).observe(attempt.seconds)
        error = attempt.error
        outcome = domain.after_attempt(attempt.message.attempt, now, self.ctx.rules.delivery,
                                       error=error.reason if error is not None else None,
                                       retryable=error.retryable if error is not None else False, rng=JITTER)
        return store.Recorded(attempt.message, outcome, int(attempt.seconds * 1000))

    def report(self, recorded: Sequence[store.Recorded], current: set[str]) -> None:
        """Count and log the outcomes just recorded (those whose claim held)."""
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


class RoundBook:
    """The durable log of one delivery round: each send marked before it starts, each outcome soon after.

    :meth:`admit` (awaited by the channel before a message goes out) commits the
    ``sending`` marks of the next ``concurrency`` messages in one transaction, so at
    most that many marked messages wait for a sender. :meth:`finished` queues an
    outcome; a flusher records the queued ones in one transaction every
    :data:`RECORD_EVERY_S` (at once when ``concurrency`` of them wait), trying again
    with back-off while PostgreSQL is unreachable, and a keeper extends the leases of
    the round's unrecorded claims every quarter lease. :meth:`close` records the rest
    and gives back what was not sent.
    """

    def __init__(self, worker: DeliveryWorker, service: Service, claims: Sequence[store.Claim],
                 attempts: Sequence[Attempt], lease: timedelta, lease_until: datetime) -> None:
        self.worker = worker
        self.service = service
        self.channel = worker.channel
        self.chunk = max(1, worker.concurrency)
        self.lease = lease
        self.lease_until = lease_until
        """The round's lease end as last committed (claim, mark or extension)."""
        self.unrecorded: dict[str, store.Claim] = {c.notification_id: c for c in claims}
        """Claims whose outcome is not recorded yet: the keeper extends their leases."""
        self._queue = list(attempts)
        """The round's attempts in the order the channel takes them; marked a chunk at a time from the front."""
        self._order = {a.message.notification_id: i for i, a in enumerate(self._queue)}
        self._marked_upto = 0
        self._marked: set[str] = set()
        self._lost: set[str] = set()
        self._marking = asyncio.Lock()
        self._refusing = False
        self._pending: list[store.Recorded] = []
        self._nudge = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task] = []

    # --- before the sends ---------------------------------------------------------------

    def open(self) -> None:
        """Start the flusher and the keeper."""
        self._tasks = [asyncio.create_task(self._flush(), name=f"notify-record-{self.channel}"),
                       asyncio.create_task(self._keep_leases(), name=f"notify-lease-{self.channel}")]

    def add(self, recorded: store.Recorded) -> None:
        """Queue an outcome known without a send (a message given up)."""
        self._pending.append(recorded)
        UNRECORDED.labels(self.channel).inc()

    async def admit(self, attempt: Attempt) -> bool:
        """Commit the ``sending`` mark of ``attempt`` (and of the next ones, one transaction per chunk).

        True: send it now. False: its claim was lost, or PostgreSQL stayed unreachable
        until the lease's end, so the message is not sent in this round.
        """
        nid = attempt.message.notification_id
        index = self._order[nid]
        if index >= self._marked_upto:
            async with self._marking:
                while index >= self._marked_upto and not self._refusing:
                    await self._mark(self._next_chunk(index))
        return nid in self._marked

    def _next_chunk(self, index: int) -> list[Attempt]:
        """The attempts to mark now: a chunk from the first unmarked one, at least up to ``index``."""
        end = max(index + 1, min(len(self._queue), self._marked_upto + self.chunk))
        return self._queue[self._marked_upto:end]

    async def _mark(self, chunk: list[Attempt]) -> None:
        claims = [a.message for a in chunk]
        pauses = iter(RECORD_BACKOFF_S)
        while True:
            now = clock.now()
            try:
                async with self.service.pool.acquire() as conn:
                    marked = await store.mark_sending(conn, claims, now, now + self.lease)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - nothing is sent unmarked: wait for the database, within the lease
                pause = next(pauses, RECORD_BACKOFF_S[-1])
                if clock.now() + timedelta(seconds=pause) >= self.lease_until:
                    log.warning("cannot log the attempts before sending; the round sends nothing more",
                                extra={"channel": self.channel, "messages": len(claims), "error": repr(exc)})
                    self._refusing = True
                    return
                await asyncio.sleep(pause)
        self._marked_upto += len(chunk)
        self._marked |= marked.held
        for claim in claims:
            if claim.notification_id not in marked.held:
                self._lost.add(claim.notification_id)  # another worker took it after our lease ran out
                self.unrecorded.pop(claim.notification_id, None)
        if marked.held:
            self.lease_until = max(self.lease_until, now + self.lease)
        if marked.resends:
            RESENDS.labels(self.channel).inc(len(marked.resends))
            log.info("resending messages whose earlier send was cut short with its outcome unknown",
                     extra={"channel": self.channel, "notification_ids": sorted(marked.resends)})

    # --- after the sends ----------------------------------------------------------------

    def finished(self, attempt: Attempt) -> None:
        """Queue the outcome of a finished attempt for the next recording transaction."""
        self.add(self.worker.outcome_of(attempt, clock.now()))
        if len(self._pending) == 1 or len(self._pending) >= self.chunk:
            self._nudge.set()

    async def _flush(self) -> None:
        """Record the queued outcomes, a transaction at a time, until the round is closed and nothing waits."""
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._nudge.clear()
                await self._nudge.wait()
                continue
            if len(self._pending) < self.chunk and not self._closing:
                self._nudge.clear()
                try:
                    await asyncio.wait_for(self._nudge.wait(), timeout=RECORD_EVERY_S)
                except TimeoutError:
                    pass
            batch, self._pending = self._pending, []
            await self._record(batch)

    async def _record(self, recorded: Sequence[store.Recorded], *, interrupted: Sequence[store.Claim] = (),
                      unsent: Sequence[store.Claim] = ()) -> None:
        """One recording transaction, tried again with back-off while PostgreSQL is unreachable.

        The outcomes stay in memory meanwhile (the gauge ``coffeetime_notification_outcomes_unrecorded``)
        and the keeper extends the leases; after :data:`RECORD_PATIENCE_S` they are dropped and the
        leases run out (those messages are sent again, counted as resends).
        """
        pauses = iter(RECORD_BACKOFF_S)
        started = clock.now()
        warned = False
        while True:
            try:
                current = await use_cases.record_round(self.service.unit_of_work(), recorded, clock.now(),
                                                       interrupted=interrupted, unsent=unsent)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - idempotent and fenced: tried again while the process lives
                if (clock.now() - started).total_seconds() > RECORD_PATIENCE_S:
                    log.error("recording delivery outcomes failed for too long; their leases run out and the same "
                              "ids go again", extra={"channel": self.channel, "messages": len(recorded),
                                                     "error": repr(exc)})
                    UNRECORDED.labels(self.channel).dec(len(recorded))
                    return
                if not warned:
                    log.warning("cannot record delivery outcomes; kept in memory and tried again",
                                extra={"channel": self.channel, "messages": len(recorded), "error": repr(exc)})
                    warned = True
                await asyncio.sleep(next(pauses, RECORD_BACKOFF_S[-1]))
        if warned:
            log.info("delivery outcomes recorded after all", extra={"channel": self.channel, "messages": len(recorded)})
        UNRECORDED.labels(self.channel).dec(len(recorded))
        for claim in (*(r.claim for r in recorded), *interrupted, *unsent):
            self.unrecorded.pop(claim.notification_id, None)
        self.worker.report(recorded, current)

    async def _keep_leases(self) -> None:
        """Extend the lease of every unrecorded claim of the round every quarter lease (every second after a failure)."""
        period = self.lease.total_seconds() / 4
        while True:
            await asyncio.sleep(period)
            claims = list(self.unrecorded.values())
            if not claims:
                continue
            until = clock.now() + self.lease
            try:
                async with self.service.pool.acquire() as conn:
                    await store.extend_leases(conn, claims, until)
                self.lease_until = until
                period = self.lease.total_seconds() / 4
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - tried again in a second; at worst a lease runs out
                log.warning("extending delivery leases failed", extra={"channel": self.channel, "error": repr(exc)})
                period = 1.0

    async def close(self, attempts: Sequence[Attempt]) -> None:
        """Record every outcome still queued, then give back the rows not sent (or cut short) in one transaction."""
        try:
            self._closing = True
            self._nudge.set()
            await asyncio.shield(self._tasks[0])
            interrupted, unsent = [], []
            for a in attempts:
                nid = a.message.notification_id
                if a.done or nid in self._lost:
                    continue
                # started, or marked: a send may have begun (its next claim is a resend); else never offered
                (interrupted if a.started or nid in self._marked else unsent).append(a.message)
            if interrupted or unsent:
                await self._record((), interrupted=interrupted, unsent=unsent)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.wait(self._tasks)
