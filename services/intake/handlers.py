"""Intake's subscriptions and publications: each delivery becomes a call of a use case (``services.py``).

Thin on purpose: the bus has parsed every message into its contract model
before a handler runs (``d.message``); a handler sorts a batch into the
arguments of one use case call, and counts and logs what the metrics need.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from faststream import Context
from faststream.nats.message import NatsMessage

from services.intake import domain, use_cases
from services.intake.duplicates import DuplicateSettings
from shared import metrics
from shared.bus import Delivery, parse_body
from shared.contracts import AppealQuery, AppealStatus, subjects
from shared.contracts.subjects import contract_for
from shared.district import load_district
from shared.service import Service

log = logging.getLogger("coffeetime.intake")
SERVICE = "intake"

#: where appeals come from; their invalid messages are rejected, not dead-lettered
APPEAL_SOURCES = (subjects.IN_HOTLINE, subjects.IN_APP, subjects.IN_RECEPTION, subjects.IN_EVENT)
#: every domain event about an appeal enters its timeline
TIMELINE_SUBJECTS = ("ct.appeal.>", "ct.order.>", "ct.deadline.>", "ct.notify.>")


def register(service: Service) -> None:
    """Declare intake's subscriptions, its publications and the ``ct.q.appeal`` responder on ``service``."""
    service.publishes(*use_cases.PUBLISHES)
    rules = duplicate_rules(service)
    for subject in APPEAL_SOURCES:
        service.consumers.subscribe(subject, registration_handler(service, subject, rules), invalid="reject")
    for subject in TIMELINE_SUBJECTS:
        service.consumers.subscribe(subject, timeline_handler(service))

    @service.broker.subscriber(subjects.Q_APPEAL, queue=SERVICE, title="intake:ct.q.appeal")
    async def answer_status_query(message: NatsMessage = Context("message")) -> AppealStatus:
        # the raw body, not a typed parameter: an invalid query is answered (found=false) with its field
        # errors, read by the consumers' own parse path, never dropped (the asker would wait for nothing)
        query, errors = parse_body(AppealQuery, message.body)
        if query is None:
            metrics.REJECTED.labels(SERVICE, subjects.Q_APPEAL).inc()
            return AppealStatus(found=False, error="; ".join(f"{e.field}: {e.message}" for e in errors)[:1000],
                                errors=errors)
        try:
            return await use_cases.appeal_status(service.unit_of_work(), query)
        except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL away: say so rather than let the asker time out
            log.warning("status query failed", extra={"error": repr(exc)})
            return AppealStatus(found=False, error="the status cannot be read now; ask again later")


def duplicate_rules(service: Service) -> tuple[DuplicateSettings, Callable[[str], str | None]]:
    """The duplicate settings (``DUPLICATE_WINDOW_DAYS``, ``DUPLICATE_MIN_SIMILARITY``) and the district's
    category of a sender's hint (an alias or a code → the category's name)."""
    settings = DuplicateSettings(window_days=service.settings.duplicate_window_days,
                                 min_similarity=service.settings.duplicate_min_similarity)
    district = load_district(service.settings.district_config)

    def category_of(hint: str) -> str | None:
        category = district.category(hint)
        return category.name if category else None

    return settings, category_of


def registration_handler(service: Service, subject: str,
                         rules: tuple[DuplicateSettings, Callable[[str], str | None]] | None = None):
    """A batch handler for ``subject``: registers each valid message's appeals once, rejects the invalid ones;
    ``rules`` (:func:`duplicate_rules`) find the likely duplicates."""
    id_field = domain.SOURCE_ID_FIELD[contract_for(subject)]
    duplicates, category_of = rules or duplicate_rules(service)

    async def handle(batch: list[Delivery]) -> None:
        """Register each valid message's appeals once; reject the invalid ones with field errors."""
        received = [use_cases.Received(d.message, d.msg_id) for d in batch if d.message is not None]
        invalid = [domain.InvalidMessage(key=d.key, subject=d.subject, source_id=d.readable_field(id_field),
                                         msg_id=d.msg_id, errors=d.errors)
                   for d in batch if d.message is None]
        done = await use_cases.register_appeals(service.unit_of_work(), received, invalid, duplicates, category_of)
        for merged in done.merged:
            log.info("likely duplicate merged", extra={"appeal_id": merged.appeal_id,
                                                       "master_appeal_id": merged.master_appeal_id,
                                                       "similarity": merged.similarity})
        for m in invalid:
            metrics.REJECTED.labels(SERVICE, subject).inc()
            log.info("message rejected", extra={"subject": m.subject, "msg_id": m.msg_id,
                                                "errors": [f"{e.field}: {e.message}" for e in m.errors]})

    return handle


def timeline_handler(service: Service):
    """A batch handler that records every domain event about an appeal in its timeline, once per event id."""

    async def handle(batch: list[Delivery]) -> None:
        """Record every domain event about an appeal in its timeline, once per event id."""
        await use_cases.record_timeline(service.unit_of_work(), [(d.subject, d.message, d.msg_id, d.data) for d in batch])

    return handle
