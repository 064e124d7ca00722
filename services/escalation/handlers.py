"""Escalation's subscribers: the events that start, move and stop the clocks.

Every subscribed subject goes through one batch handler. Per batch, in one
transaction: lock the appeals concerned (events of one appeal arrive on
several consumers at once), keep only the events not handled before (the
shared ``inbox``), merge what they tell into each order's facts, re-plan the
orders touched and bring their stored firings in line, and stage
``ct.deadline.set`` for the clocks started or moved. The rules are in
:mod:`services.escalation.domain`; the scanner (:mod:`services.escalation.scanner`)
fires the steps.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from services.escalation import domain, store
from services.escalation.config import Context
from shared import clock, outbox
from shared.bus import Delivery
from shared.contracts import events as ev
from shared.contracts import subjects
from shared.service import Service

log = logging.getLogger("coffeetime.escalation")
SERVICE = "escalation"
INBOX = "escalation-events"

#: The events that start, move or stop a clock, or that the evaluation counts.
CLOCK_EVENTS: dict[str, type[BaseModel]] = {
    subjects.ORDER_DISPATCHED: ev.OrderDispatched,
    subjects.ORDER_SIGNED: ev.OrderSigned,
    subjects.ORDER_RETURNED: ev.OrderReturned,
    subjects.ORDER_RETURN_DECIDED: ev.ReturnDecided,
    subjects.ORDER_EXTENSION_GRANTED: ev.ExtensionGranted,
    subjects.ORDER_REPLIED: ev.OrderReplied,
    subjects.ORDER_ESCALATION_REQUESTED: ev.EscalationRequested,
    subjects.APPEAL_CLOSED: ev.AppealClosed,
    subjects.APPEAL_MERGED: ev.AppealMerged,
    subjects.APPEAL_REOPENED: ev.AppealReopened,
}

PLEASED = frozenset({"satisfied", "basically_satisfied"})


class InvalidEvent(ValueError):
    """A domain event that does not fit its contract: retried, then dead-lettered for a person to look at."""


def register(service: Service, ctx: Context) -> None:
    handler = clock_event_handler(service, ctx)
    for subject in CLOCK_EVENTS:
        service.consumers.subscribe(subject, handler)


@dataclasses.dataclass(frozen=True)
class Received:
    subject: str
    event: Any
    key: str


def _parse(batch: list[Delivery]) -> list[Received]:
    received, invalid = [], []
    for d in batch:
        event = d.parse(CLOCK_EVENTS[d.subject])
        if event is None:
            invalid.append(d)
            continue
        received.append(Received(d.subject, event, event.event_id or d.msg_id or f"{d.subject}#{d.stream_seq}"))
    if invalid:
        d = invalid[0]
        raise InvalidEvent(f"{d.subject} (Nats-Msg-Id {d.msg_id}): "
                           + "; ".join(f"{e.field}: {e.message}" for e in d.errors))
    return received


def clock_event_handler(service: Service, ctx: Context):
    """Handles a batch of clock events once each, whatever their order."""

    async def handle(batch: list[Delivery]) -> None:
        received = _parse(batch)
        now = clock.now()
        async with service.pool.acquire() as conn, conn.transaction():
            await store.lock_appeals(conn, [r.event.appeal_id for r in received])
            fresh_keys = await store.first_time(conn, INBOX, [r.key for r in received])
            fresh: list[Received] = []
            for r in received:  # a key twice in one batch counts once
                if r.key in fresh_keys:
                    fresh.append(r)
                    fresh_keys.discard(r.key)
            staged = await apply_events(conn, ctx, fresh, now)
            await outbox.put_many(conn, SERVICE, staged)

    return handle


async def apply_events(conn: asyncpg.Connection, ctx: Context, received: list[Received],
                       now: datetime) -> list[tuple[str, BaseModel]]:
    """Store what the events tell, re-plan the orders they touch; returns the events to stage."""
    updates: dict[str, domain.OrderFacts] = {}
    closures: list[tuple[str, str, domain.ClosureKind, datetime, str | None]] = []
    ratings: list[tuple[str, str, str, str, str, datetime]] = []
    difficult: dict[str, str] = {}
    closed_appeals: set[str] = set()
    for r in received:
        e = r.event
        facts = domain.order_facts_from_event(r.subject, e, ctx.policies, ctx.district)
        if facts is not None:
            known = updates.get(facts.order_id)
            updates[facts.order_id] = domain.merge_facts(known, facts) if known else facts
        if r.subject == subjects.APPEAL_CLOSED:
            closures.append((r.key, e.appeal_id, "closed", e.occurred_at, e.outcome))
            closed_appeals.add(e.appeal_id)
            if e.outcome in PLEASED:
                ratings.extend((r.key, unit, e.appeal_id, e.outcome, "closed", e.occurred_at)
                               for unit in dict.fromkeys(e.unit_codes))
        elif r.subject == subjects.APPEAL_MERGED:
            closures.append((r.key, e.appeal_id, "merged", e.occurred_at, None))
            closed_appeals.add(e.appeal_id)
        elif r.subject == subjects.APPEAL_REOPENED:
            ratings.append((r.key, e.unit_code, e.appeal_id, "unsatisfied", "reopened", e.occurred_at))
        elif r.subject == subjects.ORDER_ESCALATION_REQUESTED:
            difficult.setdefault(e.order_id, e.reason)
    await store.add_closures(conn, closures)
    await store.add_ratings(conn, ratings)

    order_ids = set(updates) | set(await store.orders_of_appeals(conn, closed_appeals))
    if not order_ids:
        return []
    stored = await store.load_orders(conn, order_ids)
    appeal_ids = {u.appeal_id for u in updates.values()} | {f.appeal_id for f, _ in stored.values()}
    closures_by_appeal = await store.closures_of(conn, appeal_ids)
    states = await store.firing_states(conn, order_ids)

    staged: list[tuple[str, BaseModel]] = []
    saves, additions, cancellations, requests = [], [], [], []
    for order_id in sorted(order_ids):
        facts, published = stored.get(order_id, (None, {}))
        update = updates.get(order_id)
        facts = domain.merge_facts(facts, update) if facts and update else facts or update
        assert facts is not None
        closed_at, merged_at = domain.appeal_stops(closures_by_appeal.get(facts.appeal_id, ()), facts.dispatched_at)
        facts = dataclasses.replace(facts, closed_at=closed_at, merged_at=merged_at)
        plan = domain.plan_order(facts, ctx.calendar)
        change = domain.reconcile(plan, states.get(order_id, {}))
        published = dict(published)
        for clock_name, due in domain.deadlines_to_publish(plan, published):
            staged.append((subjects.DEADLINE_SET, domain.deadline_set_event(facts, clock_name, due, now)))
            published[clock_name] = due
        saves.append((facts, plan, published))
        additions.extend((facts, step) for step in change.add)
        cancellations.extend((order_id, key) for key in change.cancel)
        if order_id in difficult:
            requests.append((facts, plan.handling_due, difficult[order_id]))
    await store.save_orders(conn, saves)
    await store.add_firings(conn, additions, now)
    await store.add_difficult(conn, requests, now)
    cancelled = await store.cancel_firings(conn, cancellations, now)
    if additions or cancelled or requests:
        log.debug("ladders updated", extra={"orders": len(saves), "planned": len(additions),
                                            "cancelled": cancelled, "difficult": len(requests)})
    return staged
