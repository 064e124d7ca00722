"""Dispatch's subscriptions and publications, declared once; each delivery batch becomes a use case call.

Nothing here decides anything: the use cases (``use_cases.py``) do, inside one
unit of work per batch. A unit action arrives as ``ct.in.order.<unit_code>.<action>``
with a :class:`~shared.contracts.inbound.UnitAction` body; the action from the
subject and the body make one command of the union ``UnitCommand``, or, when a
field is missing or wrong, a ``ct.order.rejected`` (reason ``invalid``) naming the field.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from services.dispatch import use_cases
from shared import clock, metrics
from shared.bus import Delivery
from shared.contracts import subjects
from shared.district import District
from shared.service import Service

log = logging.getLogger("coffeetime.dispatch")

SERVICE = "dispatch"


def register(service: Service, district: District) -> None:
    """Declare what dispatch consumes, what it publishes, and its not-rated sweep."""
    service.publishes(*use_cases.PUBLISHES)
    models = use_cases.RoutingModels(district)
    service.consumers.subscribe(subjects.APPEAL_REGISTERED, registration_handler(service, district, models))
    service.consumers.subscribe(subjects.IN_ORDER_ALL, unit_action_handler(service, district), invalid="reject")
    service.consumers.subscribe(subjects.IN_FEEDBACK, feedback_handler(service, district), invalid="reject")
    service.consumers.subscribe(subjects.DEADLINE_SET, deadline_handler(service))
    service.consumers.subscribe(subjects.APPEAL_ESCALATED, escalation_handler(service))
    service.consumers.subscribe(subjects.APPEAL_SPLIT, split_handler(service, district, models))
    service.background.append(close_unrated_appeals(district))
    service.background.append(refresh_routing_model(models))


def registration_handler(service: Service, district: District, models: use_cases.RoutingModels | None = None):
    """Routes each newly registered appeal: orders, the manual queue, or an answer at once.

    The first batch after start-up waits for the routing model to be trained (the
    background task refreshes it afterwards).
    """

    async def handle(batch: list[Delivery]) -> None:
        if models is not None and not models.trained:
            await models.refresh(service.unit_of_work)
        model = models.current if models is not None else None
        async with service.unit_of_work() as uow:
            await use_cases.start_appeals(uow, district, [d.message for d in batch], clock.now(), model)

    return handle


def split_handler(service: Service, district: District, models: use_cases.RoutingModels | None = None):
    """``ct.appeal.split``: a duplicate split from its master is routed on its own, like a new appeal."""

    async def handle(batch: list[Delivery]) -> None:
        if models is not None and not models.trained:
            await models.refresh(service.unit_of_work)
        model = models.current if models is not None else None
        async with service.unit_of_work() as uow:
            await use_cases.split_appeals(uow, district, [d.message for d in batch], clock.now(), model)

    return handle


def refresh_routing_model(models: use_cases.RoutingModels):
    """Retrains the routing model when the lead unit's corrections added examples (polled every second or so)."""

    async def refresh_routing(service: Service) -> None:
        while True:
            try:
                await models.refresh(service.unit_of_work)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the model in use, try again next round
                log.warning("routing model refresh failed", extra={"error": repr(exc)})
            await asyncio.sleep(max(0.5, service.settings.scan_interval_s * 4))

    refresh_routing.ctx = models  # type: ignore[attr-defined]  # service.background_owner(RoutingModels)
    return refresh_routing


def unit_action_handler(service: Service, district: District):
    """``ct.in.order.<unit_code>.<action>``: the unit is the one in the subject (its NATS user may use only its own)."""

    async def handle(batch: list[Delivery]) -> None:
        refused = 0
        async with service.unit_of_work() as uow:
            for d in batch:
                _, _, _, unit_code, action = d.subject.split(".", 4)
                command, errors = d.message.command(action) if d.message is not None else (None, d.errors)
                if command is None:
                    refused += await use_cases.refuse_invalid(
                        uow, unit_code=unit_code, action=action, key=d.key, errors=errors,
                        action_id=d.readable_field("action_id"), order_id=d.readable_field("order_id"),
                        now=clock.now())
                    continue
                await use_cases.act(uow, district, unit_code, command, clock.now(), correlation_id=d.msg_id)
        count_rejected(subjects.IN_ORDER_ALL, refused)

    return handle


def feedback_handler(service: Service, district: District):
    """``ct.in.feedback``: satisfied closes the appeal, unsatisfied reopens it (重办)."""

    async def handle(batch: list[Delivery]) -> None:
        refused = 0
        async with service.unit_of_work() as uow:
            for d in batch:
                if d.message is None:
                    refused += await use_cases.refuse_invalid(
                        uow, unit_code="enterprise", action="feedback", key=d.key, errors=d.errors,
                        action_id=d.readable_field("feedback_id"), order_id=None, now=clock.now())
                    continue
                await use_cases.rate(uow, district, d.message, clock.now(), correlation_id=d.msg_id)
        count_rejected(subjects.IN_FEEDBACK, refused)

    return handle


def count_rejected(subject: str, refused: int) -> None:
    """Count the invalid messages of a committed batch in ``coffeetime_rejected_total`` (its alert reads it).

    Counted after the commit and once per message (a redelivered one is not refused again),
    labelled with the subscription's subject as intake's are.
    """
    if refused:
        metrics.REJECTED.labels(SERVICE, subject).inc(refused)


def deadline_handler(service: Service):
    """Keeps the clocks' deadlines (``ct.deadline.set``) so units see their lists overdue first."""

    async def handle(batch: list[Delivery]) -> None:
        async with service.unit_of_work() as uow:
            await use_cases.note_deadlines(uow, [d.message for d in batch])

    return handle


def escalation_handler(service: Service):
    """Keeps the ladder step each order reached (``ct.appeal.escalated``)."""

    async def handle(batch: list[Delivery]) -> None:
        async with service.unit_of_work() as uow:
            await use_cases.note_escalations(uow, [d.message for d in batch])

    return handle


def close_unrated_appeals(district: District):
    """Closes, as not rated, appeals whose reply waited longer than ``RATING_WAIT_DAYS`` for a rating."""

    async def close_unrated(service: Service) -> None:
        wait = timedelta(days=service.settings.rating_wait_days)
        while True:
            try:
                await use_cases.close_unrated_appeals(service.unit_of_work, district, clock.now(), wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("not-rated sweep failed", extra={"error": repr(exc)})
            await asyncio.sleep(max(1.0, service.settings.scan_interval_s * 10))

    return close_unrated
