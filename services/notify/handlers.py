"""Notify's subscribers: domain events in, planned notifications out. Thin on purpose.

One batch handler serves ``ct.appeal.>``, ``ct.order.>``, ``ct.deadline.warning`` and
``ct.deadline.monthly_list`` (one durable consumer each, so every subject is consumed
once; the two ``ct.deadline.set`` of every order are not fetched at all). Per batch, in one
transaction: lock the appeals concerned, keep the contact of each newly registered
appeal, park the events that need a contact not known yet, plan the others with
:func:`domain.plan_notifications`, plan the events that were waiting for the
contacts just stored, and insert the notifications (``ON CONFLICT DO NOTHING`` on
the notification id: a redelivered event plans nothing twice). After the commit
the delivery workers of the channels concerned are woken.

SMS replies (``POST /sms/inbound``, :func:`receive_sms_reply`) become
``ct.in.feedback`` through the outbox, once per gateway message id.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel, Field, ValidationError

from services.notify import domain, store
from services.notify.config import Context
from services.notify.metrics import PLANNED, SMS_REPLIES
from shared import clock, outbox
from shared.bus import Delivery
from shared.contracts import Feedback, Rating, subjects
from shared.contracts.common import field_errors, mask_phone
from shared.service import Service

log = logging.getLogger("coffeetime.notify")
SERVICE = "notify"

SUBJECTS: tuple[str, ...] = ("ct.appeal.>", "ct.order.>", subjects.DEADLINE_WARNING, subjects.DEADLINE_MONTHLY_LIST)
"""What notify consumes; subjects without a rule are acked and ignored."""

WAITING_SWEEP_S = 5.0
"""How often the waiting events are looked at (contact known meanwhile, or waited too long)."""
WAITING_SWEEP_BATCH = 200
PLAN_SLICE = 16
"""Events parsed or planned between two yields to the event loop: a batch of 200 takes some 30 ms of CPU,
which would otherwise stall the delivery workers' sends in flight."""


async def _pause(i: int) -> None:
    """Let the event loop run other tasks after every :data:`PLAN_SLICE` events."""
    if i and i % PLAN_SLICE == 0:
        await asyncio.sleep(0)


class InvalidEvent(ValueError):
    """A domain event that does not fit its contract: retried, then dead-lettered for a person to look at."""


@dataclass(frozen=True)
class Received:
    subject: str
    event: dict[str, Any]


def register(service: Service, ctx: Context) -> None:
    handler = planning_handler(service, ctx)
    for subject in SUBJECTS:
        service.consumers.subscribe(subject, handler)
    service.background.append(waiting_sweeper(ctx))


def _concerns_notify(subject: str, ctx: Context) -> bool:
    return subject == subjects.APPEAL_REGISTERED or any(
        domain.subject_matches(rule.subject, subject) for rule in ctx.rules.rules
    )


async def _parse(batch: list[Delivery], ctx: Context) -> list[Received]:
    """The events of a batch that notify acts on, validated against their contract."""
    received: list[Received] = []
    invalid: list[str] = []
    for i, d in enumerate(batch):
        await _pause(i)
        if not _concerns_notify(d.subject, ctx):
            continue
        try:
            body = json.loads(d.data)
        except (ValueError, UnicodeDecodeError):
            invalid.append(f"{d.subject} (Nats-Msg-Id {d.msg_id}): body: not JSON")
            continue
        if not isinstance(body, dict):
            invalid.append(f"{d.subject} (Nats-Msg-Id {d.msg_id}): body: not a JSON object")
            continue
        model = subjects.EVENTS.get(d.subject)
        if model is not None:
            try:
                model.model_validate(body)
            except ValidationError as exc:
                errors = "; ".join(f"{e.field}: {e.message}" for e in field_errors(exc))
                invalid.append(f"{d.subject} (Nats-Msg-Id {d.msg_id}): {errors}")
                continue
        # the outbox id is both the event id and the Nats-Msg-Id; either names the event
        body["event_id"] = body.get("event_id") or d.msg_id or ""
        if not body["event_id"]:
            invalid.append(f"{d.subject} (stream seq {d.stream_seq}): event_id: missing")
            continue
        received.append(Received(d.subject, body))
    if invalid:
        raise InvalidEvent(invalid[0])
    return received


def _plan(ctx: Context, subject: str, event: dict[str, Any], contact: dict[str, Any] | None,
          now: datetime) -> list[tuple[domain.PlannedNotification, str]]:
    planned = domain.plan_notifications(subject, event, ctx.district, ctx.rules, now, contact=contact,
                                        note=log.warning)
    correlation = str(event.get("correlation_id") or "")
    return [(p, correlation) for p in planned]


async def _insert(conn: asyncpg.Connection, planned: list[tuple[domain.PlannedNotification, str]]) -> list[str]:
    channels = await store.add_notifications(conn, planned)
    for channel in channels:
        PLANNED.labels(channel).inc()
    return channels


def planning_handler(service: Service, ctx: Context):
    """Plans each event's notifications once; events needing an unknown contact wait for it."""

    async def handle(batch: list[Delivery]) -> None:
        received = await _parse(batch, ctx)
        if not received:
            return
        now = clock.now()
        new_contacts = {
            r.event["appeal_id"]: (domain.contact_from_registered(r.event), r.event["event_id"])
            for r in received if r.subject == subjects.APPEAL_REGISTERED
        }
        appeal_ids = {str(r.event["appeal_id"]) for r in received if r.event.get("appeal_id")}
        planned: list[tuple[domain.PlannedNotification, str]] = []
        waiting: list[store.WaitingEvent] = []
        async with service.pool.acquire() as conn, conn.transaction():
            await store.lock_appeals(conn, appeal_ids)
            await store.save_contacts(conn, new_contacts)
            contacts = await store.contacts_of(conn, appeal_ids)
            for i, r in enumerate(received):
                await _pause(i)
                contact = contacts.get(r.event.get("appeal_id"))
                if contact is None and domain.needs_contact(r.subject, r.event, ctx.rules):
                    waiting.append(store.WaitingEvent(r.subject, r.event))
                else:
                    planned += _plan(ctx, r.subject, r.event, contact, now)
            await store.park(conn, waiting, now)
            released = await store.take_waiting_for(conn, new_contacts)
            for i, w in enumerate(released):
                await _pause(i)
                planned += _plan(ctx, w.subject, w.event, contacts.get(w.event["appeal_id"]), now)
            channels = await _insert(conn, planned)
        ctx.wake(channels)
        if waiting or released:
            log.info("events waiting for the enterprise contact",
                     extra={"parked": len(waiting), "released": len(released)})

    return handle


async def release_waiting(service: Service, ctx: Context, wait: timedelta = domain.CONTACT_WAIT) -> int:
    """Plan the waiting events whose contact is known by now, or that waited longer than ``wait``
    (planned without it). Returns how many were planned."""
    now = clock.now()
    async with service.pool.acquire() as conn, conn.transaction():
        candidates = await store.waiting_to_release(conn, now - wait, WAITING_SWEEP_BATCH)
        if not candidates:
            return 0
        await store.lock_appeals(conn, [c["appeal_id"] for c in candidates])
        taken = await store.take_waiting(conn, [c["event_id"] for c in candidates])
        contacts = await store.contacts_of(conn, [w.event["appeal_id"] for w in taken])
        planned: list[tuple[domain.PlannedNotification, str]] = []
        for i, w in enumerate(taken):
            await _pause(i)
            contact = contacts.get(w.event["appeal_id"])
            if contact is None:
                log.warning("联系人未知，事件不再等待 / no contact arrived in time; planned without it",
                            extra={"subject": w.subject, "event_id": w.event["event_id"],
                                   "appeal_id": w.event["appeal_id"]})
            planned += _plan(ctx, w.subject, w.event, contact, now)
        channels = await _insert(conn, planned)
    ctx.wake(channels)
    return len(taken)


def waiting_sweeper(ctx: Context):
    """The background task running :func:`release_waiting` every few seconds."""

    async def release_waiting_events(service: Service) -> None:
        while True:
            try:
                await release_waiting(service, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the rows stay; the next round retries
                log.warning("releasing waiting events failed", extra={"error": repr(exc)})
            await asyncio.sleep(WAITING_SWEEP_S)

    release_waiting_events.ctx = ctx  # type: ignore[attr-defined] - found by __main__.context_of
    return release_waiting_events


# --- SMS replies ---------------------------------------------------------------------------------------


class SmsReplyResult(BaseModel):
    """What became of an SMS reply."""

    accepted: bool = Field(description="True: the reply was read as a rating and sent on as `ct.in.feedback`.")
    duplicate: bool = Field(False, description="True: this gateway message id was handled before; "
                                               "the answer repeats the first one.")
    appeal_id: str | None = Field(None, description="The appeal rated: that of the latest rating invitation "
                                                    "delivered to the phone.")
    rating: Rating | None = Field(None, description="satisfied, basically_satisfied or unsatisfied.")
    feedback_id: str | None = Field(None, description="`sms-` + the gateway message id; the `ct.in.feedback` id.")
    reason: str | None = Field(None, description="Why the reply was not accepted, Chinese first.")


UNKNOWN_PHONE = "该号码没有收到过评价邀请 / no rating invitation was sent to this number"
NOT_UNDERSTOOD = "未能识别评价，请回复1（满意）、2（基本满意）或3（不满意） / rating not understood: reply 1, 2 or 3"


class _StagedFeedback(Feedback):
    """The feedback as staged in the outbox: its outbox id (and Nats-Msg-Id) is the feedback id."""

    event_id: str = Field(exclude=True)


async def receive_sms_reply(service: Service, message_id: str, phone: str, text: str,
                            received_at: datetime | None) -> tuple[int, SmsReplyResult]:
    """Read an SMS reply as the rating of the latest invitation sent to ``phone``; stage
    ``ct.in.feedback`` once per gateway ``message_id``. Returns the HTTP status and the answer."""
    rating = domain.parse_rating_reply(text)
    async with service.pool.acquire() as conn, conn.transaction():
        invitation = await store.latest_rating_invitation(conn, phone)
        if invitation is None:
            status, result = 404, SmsReplyResult(accepted=False, reason=UNKNOWN_PHONE)
        elif rating is None:
            status, result = 200, SmsReplyResult(accepted=False, appeal_id=invitation["appeal_id"],
                                                 reason=NOT_UNDERSTOOD)
        else:
            status, result = 200, SmsReplyResult(accepted=True, appeal_id=invitation["appeal_id"], rating=rating,
                                                 feedback_id=domain.feedback_id_for_sms(message_id))
        fresh = await store.save_inbound_sms(
            conn, message_id=message_id, phone=phone, text=text, received_at=received_at, status_code=status,
            accepted=result.accepted, reason=result.reason, appeal_id=result.appeal_id,
            rating=result.rating.value if result.rating else None, feedback_id=result.feedback_id,
        )
        if not fresh:
            earlier = await store.inbound_sms(conn, message_id)
            status = earlier["status_code"]
            result = SmsReplyResult(accepted=earlier["accepted"], duplicate=True, appeal_id=earlier["appeal_id"],
                                    rating=earlier["rating"], feedback_id=earlier["feedback_id"],
                                    reason=earlier["reason"])
        elif result.accepted:
            await outbox.put(conn, SERVICE, subjects.IN_FEEDBACK, _StagedFeedback(
                event_id=result.feedback_id, feedback_id=result.feedback_id, appeal_id=result.appeal_id,
                rating=result.rating, comment=text[:2000], via="sms",
            ))
    if fresh and result.accepted:
        service.wake_outbox()
    outcome = ("duplicate" if not fresh else "accepted" if result.accepted
               else "unknown_phone" if status == 404 else "not_understood")
    SMS_REPLIES.labels(outcome).inc()
    log.info("sms reply %s", outcome, extra={"message_id": message_id, "phone": mask_phone(phone),
                                              "appeal_id": result.appeal_id,
                                              "rating": result.rating.value if result.rating else None})
    return status, result
