"""Intake's use cases (its service layer): what the NATS handlers and the HTTP API both call.

Each use case takes a unit of work that is not open yet (``service.unit_of_work()``,
or a fake in tests), opens it once, and works through its repositories
(``uow.appeals``, ``uow.timeline``), its inbox and :meth:`publish`. Messages
arrive as their contract models, already parsed at the edge; nothing here sees
a raw delivery.

- :func:`register_appeals`: the appeals of valid inbound messages, registered once
  per (channel, source id), and the invalid messages rejected once each, in one
  transaction per batch.
- :func:`split_appeal`: undo a duplicate's merge (``POST /appeals/{appeal_id}/split``).
- :func:`record_timeline`: every domain event about an appeal, once per event id.
- :func:`appeal_status`: the public status of one appeal (``ct.q.appeal``,
  ``GET /appeals/{appeal_id}``, ``GET /appeals?channel=&source_id=``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel

from services.intake import domain, duplicates
from services.intake.domain import InboundAppeal, InvalidMessage
from services.intake.duplicates import DuplicateSettings, Match
from shared import clock
from shared.contracts import (
    AppealMerged,
    AppealQuery,
    AppealRegistered,
    AppealRejected,
    AppealSplit,
    AppealStatus,
    EventRecord,
    subjects,
)

#: the inbox consumer of rejections; the name predates the shared inbox, so existing rows still count
REJECTIONS = "intake-rejections"

#: what intake publishes (declared in ``handlers.register``; a fake unit of work declares the same)
PUBLISHES = (subjects.APPEAL_REGISTERED, subjects.APPEAL_REJECTED, subjects.APPEAL_MERGED, subjects.APPEAL_SPLIT)


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
    merged: list[AppealMerged] = field(default_factory=list)


async def register_appeals(uow, received: Sequence[Received], invalid: Sequence[InvalidMessage] = (),
                           duplicates: DuplicateSettings | None = None,
                           category_of: Callable[[str], str | None] | None = None) -> Registration:
    """Register the appeals of ``received`` (诉求登记) and reject each of ``invalid`` once, in one transaction.

    An appeal is registered once per (channel, source id), however often and under
    whatever message id it arrives: ``ct.appeal.registered`` is staged only for the
    new ones. An invalid message gets one ``ct.appeal.rejected`` with its field
    errors, however often it is delivered (the inbox remembers its key).

    A new appeal that repeats an earlier one of its enterprise (:mod:`services.intake.duplicates`,
    ``duplicates`` its settings, ``category_of`` a hint's category name) is linked
    to its master in the same transaction: its registration names the master
    (``duplicate_of``, ``similarity``) and ``ct.appeal.merged`` is staged beside it.
    The possible masters of the whole batch come from one query.
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
        fresh_appeals: list[tuple[domain.NewAppeal, str | None, str]] = []
        for appeal, msg_id in zip(appeals, msg_ids, strict=True):
            appeal_id = new_ids.pop((appeal.channel.value, appeal.source_id), None)
            if appeal_id:  # None: registered before, or twice in this batch
                fresh_appeals.append((appeal, msg_id, appeal_id))
        matches = await _find_duplicates(uow, fresh_appeals, duplicates, category_of)
        await uow.appeals.link_duplicates([(a, m.master_appeal_id, m.similarity) for a, m in matches.items()])
        for appeal, msg_id, appeal_id in fresh_appeals:
            match = matches.get(appeal_id)
            event = domain.registered_event(appeal, appeal_id, now, msg_id or appeal.source_ref, match)
            uow.publish(subjects.APPEAL_REGISTERED, event)
            done.registered.append(event)
            if match is not None:
                merged = domain.merged_event(event, match)
                uow.publish(subjects.APPEAL_MERGED, merged)
                done.merged.append(merged)
        fresh = await uow.first_time(REJECTIONS, [m.key for m in invalid]) if invalid else set()
        for m in invalid:
            if m.key in fresh:
                fresh.discard(m.key)  # the same stored message twice in a batch: one rejection
                event = AppealRejected(occurred_at=now, subject=m.subject, source_id=m.source_id, msg_id=m.msg_id,
                                       errors=list(m.errors))
                uow.publish(subjects.APPEAL_REJECTED, event)
                done.rejected.append(event)
    return done


async def _find_duplicates(uow, fresh: Sequence[tuple[domain.NewAppeal, str | None, str]],
                           settings: DuplicateSettings | None,
                           category_of: Callable[[str], str | None] | None) -> dict[str, Match]:
    """{appeal_id: its master} for the likely duplicates among the appeals just registered (one query)."""
    if settings is None or not settings.enabled or not fresh:
        return {}
    new = [_as_candidate(appeal, appeal_id, category_of) for appeal, _, appeal_id in fresh]
    usccs = sorted({c.enterprise_uscc for c in new if c.enterprise_uscc})
    phones = sorted({c.contact_phone for c in new if c.contact_phone and not c.enterprise_uscc})
    if not usccs and not phones:
        return {}
    start = min(c.received_at for c in new) - timedelta(days=settings.window_days)
    end = max(c.received_at for c in new)
    new_ids = {c.appeal_id for c in new}
    earlier = [c for c in await uow.appeals.duplicate_candidates(usccs, phones, start, end, category_of)
               if c.appeal_id not in new_ids]
    return duplicates.match_batch(new, earlier, settings)


def _as_candidate(appeal: domain.NewAppeal, appeal_id: str,
                  category_of: Callable[[str], str | None] | None) -> duplicates.Candidate:
    hint = appeal.category_hint.strip() if appeal.category_hint else None
    category = (category_of(hint) if category_of and hint else None) or hint
    return duplicates.Candidate(appeal_id=appeal_id, received_at=appeal.received_at, content=appeal.content,
                                kind=appeal.kind.value, enterprise_uscc=appeal.enterprise_uscc,
                                contact_phone=appeal.contact_phone, category=category or None)


@dataclass(frozen=True)
class Split:
    """What :func:`split_appeal` did: ``outcome`` is ``split`` (now), ``already_split``, ``not_found``,
    ``not_a_duplicate`` or ``closed``; the event when one was staged now."""

    outcome: str
    appeal_id: str
    master_appeal_id: str | None = None
    split_at: datetime | None = None
    split_by: str | None = None
    event: AppealSplit | None = None


async def split_appeal(uow, appeal_id: str, actor: str, reason: str | None = None) -> Split:
    """Undo a merge (拆单): the duplicate ``appeal_id`` no longer follows its master; idempotent.

    The link is locked, marked split and ``ct.appeal.split`` staged in one
    transaction; dispatch then routes the appeal on its own, like a new one. A
    second split finds it split and stages nothing.
    """
    now = clock.now()
    async with uow:
        link = await uow.appeals.lock_link(appeal_id)
        if link is None:
            return Split("not_found", appeal_id)
        status = domain.status_of([t.subject for t in await uow.timeline.of(appeal_id)])
        outcome = duplicates.split_outcome(link, status)
        if outcome != "split":
            return Split(outcome, appeal_id, link.master_appeal_id, link.split_at, link.split_by)
        await uow.appeals.mark_split(appeal_id, now, actor)
        event = domain.split_event(link, now, actor, reason)
        uow.publish(subjects.APPEAL_SPLIT, event)
    return Split("split", appeal_id, link.master_appeal_id, now, actor, event)


async def record_timeline(uow, events: Sequence[tuple[str, BaseModel, str | None]
                                                 | tuple[str, BaseModel, str | None, bytes]]) -> int:
    """Add each (subject, event, msg_id[, body]) about an appeal to its timeline, once per event id; returns how
    many were new. ``body``, the JSON the event was read from, is stored as its payload as it is.

    Events that concern no appeal (a rejection, the monthly list) are left out.
    """
    entries = [e for subject, event, msg_id, *body in events
               if (e := domain.timeline_entry(subject, event, msg_id, *body))]
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
