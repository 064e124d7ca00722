"""Intake's subscribers: parse, call the domain, store, stage the events. Thin on purpose."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from faststream import Context
from faststream.nats.message import NatsMessage

from services.intake import domain, store
from shared import clock, metrics, outbox
from shared.bus import Delivery
from shared.contracts import (
    AppAppeal,
    AppealQuery,
    AppealRejected,
    AppealStatus,
    EventRecord,
    HotlineCall,
    ReceptionRecord,
    mask_phone,
    subjects,
)
from shared.service import Service

log = logging.getLogger("coffeetime.intake")
SERVICE = "intake"

# subject → (model, how it becomes appeals, the field holding the sender's id)
APPEAL_SOURCES: dict[str, tuple[type, Callable, str]] = {
    subjects.IN_HOTLINE: (HotlineCall, lambda m: [domain.from_hotline(m)], "call_id"),
    subjects.IN_APP: (AppAppeal, lambda m: [domain.from_app(m)], "submission_id"),
    subjects.IN_RECEPTION: (ReceptionRecord, lambda m: [domain.from_reception(m)], "record_id"),
    subjects.IN_EVENT: (EventRecord, domain.from_event, "event_id"),
}
TIMELINE_SUBJECTS = ("ct.appeal.>", "ct.order.>", "ct.deadline.>", "ct.notify.>")


def register(service: Service) -> None:
    for subject, (model, to_appeals, id_field) in APPEAL_SOURCES.items():
        service.consumers.subscribe(subject, registration_handler(service, subject, model, to_appeals, id_field),
                                    invalid="reject")
    for subject in TIMELINE_SUBJECTS:
        service.consumers.subscribe(subject, timeline_handler(service))

    @service.broker.subscriber(subjects.Q_APPEAL, queue=SERVICE, title="intake:ct.q.appeal")
    async def answer_status_query(message: NatsMessage = Context("message")) -> dict:
        try:
            query = AppealQuery.model_validate_json(message.body)
        except ValueError as exc:
            return AppealStatus(found=False, error=str(exc).splitlines()[0]).model_dump(mode="json")
        async with service.pool.acquire() as conn:
            status = await appeal_status(conn, query.appeal_id, query.channel, query.source_id)
        return status.model_dump(mode="json")


def registration_handler(service: Service, subject: str, model: type, to_appeals: Callable, id_field: str):
    """Registers each valid message's appeals once; rejects the invalid ones with field errors."""

    async def handle(batch: list[Delivery]) -> None:
        now = clock.now()
        appeals: list[domain.NewAppeal] = []
        msg_ids: list[str | None] = []
        records: list[EventRecord] = []
        for d in batch:
            parsed = d.parse(model)
            if parsed is None:
                continue
            if isinstance(parsed, EventRecord):
                records.append(parsed)
            for appeal in to_appeals(parsed):
                appeals.append(appeal)
                msg_ids.append(d.msg_id)
        invalid = [d for d in batch if d.parsed is None]

        async with service.pool.acquire() as conn, conn.transaction():
            for record in records:
                await store.save_coffee_event(conn, record)
            new_ids = await store.register_appeals(conn, appeals, msg_ids)
            events = []
            for appeal, msg_id in zip(appeals, msg_ids, strict=True):
                appeal_id = new_ids.pop((appeal.channel.value, appeal.source_id), None)
                if appeal_id:  # None: registered before, or twice in this batch
                    events.append((subjects.APPEAL_REGISTERED,
                                   domain.registered_event(appeal, appeal_id, now, msg_id or appeal.source_ref)))
            fresh = await store.first_time(conn, f"{SERVICE}-rejections", [f"{d.subject}#{d.stream_seq}" for d in invalid])
            for d in invalid:
                if f"{d.subject}#{d.stream_seq}" in fresh:
                    events.append((subjects.APPEAL_REJECTED, AppealRejected(
                        occurred_at=now, subject=d.subject, source_id=d.readable_field(id_field),
                        msg_id=d.msg_id, errors=d.errors)))
            await outbox.put_many(conn, SERVICE, events)

        for d in invalid:
            metrics.REJECTED.labels(SERVICE, subject).inc()
            log.info("message rejected", extra={"subject": d.subject, "msg_id": d.msg_id,
                                                "errors": [f"{e.field}: {e.message}" for e in d.errors]})

    return handle


def timeline_handler(service: Service):
    """Records every domain event about an appeal in its timeline, once per event id."""

    async def handle(batch: list[Delivery]) -> None:
        entries = []
        for d in batch:
            try:
                event = json.loads(d.data)
            except ValueError:
                log.warning("domain event is not JSON; skipped", extra={"subject": d.subject, "msg_id": d.msg_id})
                continue
            entry = domain.timeline_entry(d.subject, event, d.msg_id) if isinstance(event, dict) else None
            if entry:
                entries.append(entry)
        async with service.pool.acquire() as conn:
            await store.add_timeline(conn, entries)

    return handle


async def appeal_status(conn, appeal_id: str | None, channel: str | None = None,
                        source_id: str | None = None) -> AppealStatus:
    """The status and timeline of one appeal, as the query and the HTTP API answer it."""
    row = await store.find_appeal(conn, appeal_id, channel, source_id)
    if row is None:
        return AppealStatus(found=False, appeal_id=appeal_id, channel=channel, source_id=source_id,
                            error="no such appeal")
    timeline = await store.timeline_of(conn, row["appeal_id"])
    return AppealStatus(
        appeal_id=row["appeal_id"], channel=row["channel"], source_id=row["source_id"],
        status=domain.status_of([t["subject"] for t in timeline]),
        enterprise_name=row["enterprise_name"],
        contact_phone=mask_phone(row["contact_phone"]) if row["contact_phone"] else None,
        kind=row["kind"], content=row["content"], received_at=row["received_at"],
        registered_at=row["registered_at"],
        timeline=[{"at": t["occurred_at"], "subject": t["subject"], "actor": t["actor"], "what": t["what"]}
                  for t in timeline],
    )
