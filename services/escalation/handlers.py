"""Escalation's subscriptions and publications: deliveries in, use cases called.

Every clock subject (:data:`use_cases.CLOCK_SUBJECTS`) goes through one batch
handler; the bus has parsed each message into its contract model and
dead-lettered the invalid ones. A batch is one unit of work (one transaction):
:func:`use_cases.record_clock_events` does the rest. The scanner
(:mod:`services.escalation.scanner`) fires the steps.
"""

from __future__ import annotations

from services.escalation import use_cases
from services.escalation.config import Context
from services.escalation.use_cases import Received
from shared import clock
from shared.bus import Delivery
from shared.service import Service

SERVICE = "escalation"


def register(service: Service, ctx: Context) -> None:
    """Declare what escalation publishes and subscribe the clock handler to every clock subject."""
    service.publishes(*use_cases.PUBLISHES)
    handler = clock_event_handler(service, ctx)
    for subject in use_cases.CLOCK_SUBJECTS:
        service.consumers.subscribe(subject, handler)


def clock_event_handler(service: Service, ctx: Context):
    """The batch handler of the clock subjects."""

    async def handle(batch: list[Delivery]) -> None:
        """Start, move and stop the orders' clocks: each event once, whatever their order."""
        received = [Received(d.subject, d.message, d.message.event_id or d.msg_id or d.key) for d in batch]
        async with service.unit_of_work() as uow:
            await use_cases.record_clock_events(uow, ctx, received, clock.now())

    return handle
