"""Notify's subscribers: what it consumes and publishes, and each delivery turned into a use case call.

One batch handler serves ``ct.appeal.>``, ``ct.order.>``, ``ct.deadline.warning``,
``ct.deadline.moved`` and ``ct.deadline.monthly_list`` (one durable consumer each, so every subject is consumed
once; the two ``ct.deadline.set`` of every order are not fetched at all). The bus has
parsed each message into its contract model (an invalid one is dead-lettered before
it gets here); the handler hands the batch to :func:`use_cases.plan_events`, one
transaction per batch. A background sweeper runs :func:`use_cases.release_waiting`.

Notify publishes the outcomes of its deliveries (``ct.notify.delivered`` /
``ct.notify.failed``, from ``delivery.py``) and the ratings read from SMS replies
(``ct.in.feedback``, from ``POST /sms/inbound``), all through the unit of work.
"""

from __future__ import annotations

import asyncio
import logging

from services.notify import use_cases
from services.notify.config import Context
from services.notify.use_cases import Received
from shared.bus import Delivery
from shared.contracts import subjects
from shared.service import Service

log = logging.getLogger("coffeetime.notify")

SUBJECTS: tuple[str, ...] = ("ct.appeal.>", "ct.order.>", subjects.DEADLINE_WARNING, subjects.DEADLINE_MONTHLY_LIST,
                             subjects.DEADLINE_MOVED)
"""What notify consumes; subjects without a rule are acked and ignored."""

PUBLISHES: tuple[str, ...] = (subjects.NOTIFY_DELIVERED, subjects.NOTIFY_FAILED, subjects.IN_FEEDBACK)
"""What notify publishes: delivery outcomes, and the ratings read from SMS replies."""

WAITING_SWEEP_S = 5.0
"""How often the waiting events are looked at (contact known meanwhile, or waited too long)."""


def register(service: Service, ctx: Context) -> None:
    """Declare notify's subscriptions and publications, and its sweeper of waiting events."""
    service.publishes(*PUBLISHES)
    handler = planning_handler(service, ctx)
    for subject in SUBJECTS:
        service.consumers.subscribe(subject, handler)
    service.background.append(waiting_sweeper(ctx))


def received(d: Delivery) -> Received:
    """A delivery as the use case takes it: the subject and the model, its ``event_id`` the
    Nats-Msg-Id when the body carries none (the outbox id is both)."""
    event = d.message
    if not getattr(event, "event_id", None) and d.msg_id:
        event = event.model_copy(update={"event_id": d.msg_id})
    return Received(d.subject, event)


def planning_handler(service: Service, ctx: Context):
    """Plans each event's notifications once; events needing an unknown contact wait for it."""

    async def plan_notifications(batch: list[Delivery]) -> None:
        """Plan the notifications of a batch of domain events, in one transaction."""
        await use_cases.plan_events(service.unit_of_work(), ctx, [received(d) for d in batch])

    return plan_notifications


def waiting_sweeper(ctx: Context):
    """The background task running :func:`use_cases.release_waiting` every few seconds."""

    async def release_waiting_events(service: Service) -> None:
        while True:
            try:
                await use_cases.release_waiting(service.unit_of_work(), ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the rows stay; the next round retries
                log.warning("releasing waiting events failed", extra={"error": repr(exc)})
            await asyncio.sleep(WAITING_SWEEP_S)

    release_waiting_events.ctx = ctx  # type: ignore[attr-defined] - found by __main__.context_of
    return release_waiting_events
