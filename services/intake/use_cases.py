"""Intake's use cases (its service layer): what the NATS handlers and the HTTP API both call.

Each use case takes a unit of work that is not open yet (``service.unit_of_work()``,
or a fake in tests), opens it once, and works through its repositories
(``uow.appeals``, ``uow.timeline``), its inbox and :meth:`publish`. Messages
arrive as their contract models, already parsed at the edge; nothing here sees
a raw delivery.

- :func:`register_appeals`: the appeals of valid inbound messages, registered once
  per (channel, source id), and the invalid messages rejected once each, in one
  transaction per batch.
- :func:`record_timeline`: every domain event about an appeal, once per event id.
- :func:`appeal_status`: the public status of one appeal (``ct.q.appeal``,
  ``GET /appeals/{appeal_id}``, ``GET /appeals?channel=&source_id=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from services.intake import domain
from services.intake.domain import InboundAppeal, InvalidMessage
from shared import clock
from shared.contracts import AppealQuery, AppealRegistered, AppealRejected, AppealStatus, EventRecord, subjects

#: the inbox consumer of rejections; the name predates the shared inbox, so existing rows still count
REJECTIONS = "intake-rejections"

#: what intake publishes (declared in ``handlers.register``; a fake unit of work declares the same).
#: ``ct.appeal.merged`` is intake's in the public contract (duplicate merging), though no use case stages it yet
PUBLISHES = (subjects.APPEAL_REGISTERED, subjects.APPEAL_REJECTED, subjects.APPEAL_MERGED)


@dataclass(frozen=True)
class Received:
    """A valid inbound message and the ``Nats-Msg-Id`` it came with (the correlation id of its appeals)."""

    message: InboundAppeal
    msg_id: str | None = None


@dataclass
class Registration:
    """What one call of :func:`register_appeals` did."""

    registered: list[AppealRegistered] = field(default_factory=list)
    rejected: list[AppealRejected] = field(default_factory=list)


async def register_appeals(uow, received: Sequence[Received], invalid: Sequence[InvalidMessage] = ()) -> Registration:
    """Register the appeals of ``received`` (诉求登记) and reject each of ``invalid`` once, in one transaction.

    An appeal is registered once per (channel, source id), however often and under
    whatever message id it arrives: ``ct.appeal.registered`` is staged only for the
    new ones. An invalid message gets one ``ct.appeal.rejected`` with its field
    errors, however often it is delivered (the inbox remembers its key).
    """
    now = clock.now()
    appeals: list[domain.NewAppeal] = []
    msg_ids: list[str | None] = []
    records: list[EventRecord] = []
    for r in received:
        if isinstance(r.message, EventRecord):
            records.append(r.message)
        for appeal in domain.appeals_from(r.message):
            appeals.append(appeal)
            msg_ids.append(r.msg_id)
    done = Registration()
    async with uow:
        await uow.appeals.keep_event_records(records)
        new_ids = await uow.appeals.add_new(appeals, msg_ids)
        for appeal, msg_id in zip(appeals, msg_ids, strict=True):
            appeal_id = new_ids.pop((appeal.channel.value, appeal.source_id), None)
            if appeal_id:  # None: registered before, or twice in this batch
                event = domain.registered_event(appeal, appeal_id, now, msg_id or appeal.source_ref)
                uow.publish(subjects.APPEAL_REGISTERED, event)
                done.registered.append(event)
        fresh = await uow.first_time(REJECTIONS, [m.key for m in invalid]) if invalid else set()
        for m in invalid:
            if m.key in fresh:
                fresh.discard(m.key)  # the same stored message twice in a batch: one rejection
                event = AppealRejected(occurred_at=now, subject=m.subject, source_id=m.source_id, msg_id=m.msg_id,
                                       errors=list(m.errors))
                uow.publish(subjects.APPEAL_REJECTED, event)
                done.rejected.append(event)
    return done


async def record_timeline(uow, events: Sequence[tuple[str, BaseModel, str | None]]) -> int:
    """Add each (subject, event, msg_id) about an appeal to its timeline, once per event id; returns how many were new.

    Events that concern no appeal (a rejection, the monthly list) are left out.
    """
    entries = [e for subject, event, msg_id in events if (e := domain.timeline_entry(subject, event, msg_id))]
    if not entries:
        return 0
    async with uow:
        return await uow.timeline.add(entries)


async def appeal_status(uow, query: AppealQuery) -> AppealStatus:
    """The status and timeline of the appeal ``query`` names, or a reply with ``found=False``."""
    async with uow:
        appeal = await uow.appeals.find(query.appeal_id, query.channel, query.source_id)
        if appeal is None:
            return domain.not_found(query.appeal_id, query.channel, query.source_id)
        timeline = await uow.timeline.of(appeal.appeal_id)
    return domain.status_reply(appeal, timeline)
