"""Notify's use cases: what the subscribers, the delivery workers, the sweeper and the HTTP API ask of it.

Each takes a unit of work (:class:`~services.notify.unit_of_work.NotifyUnitOfWork`, or a
fake in ``tests/unit``) and typed arguments, never a delivery or a dict:

- :func:`plan_events`: a batch of domain events (contract models) → the notifications
  they cause, in one transaction: lock the appeals concerned, keep the contact of each
  newly registered appeal, park the events that need a contact not known yet, plan
  the others, plan the events that were waiting for the contacts just stored, and
  insert the notifications (a redelivered event plans nothing twice). After the
  commit the delivery workers of the channels concerned are woken.
- :func:`release_waiting`: the waiting events whose contact is known by now, or that
  waited too long (planned without it).
- :func:`record_round`: a delivery round's outcomes, attempts and outcome events.
- :func:`receive_sms_reply`: an SMS reply → ``ct.in.feedback``, once per gateway id.
- :func:`notifications_page`, :func:`notification_detail`: what the HTTP API shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, Field

from services.notify import domain, store
from services.notify.domain import EnterpriseContact, EventFacts, NotifyRules, PlannedNotification
from services.notify.metrics import PLANNED, SMS_REPLIES
from services.notify.unit_of_work import NotifyUnitOfWork
from shared import clock
from shared.contracts import Feedback, NotificationDelivered, NotificationFailed, Rating, subjects
from shared.contracts.common import mask_phone
from shared.contracts.events import AppealRegistered
from shared.district import District

log = logging.getLogger("coffeetime.notify")
SERVICE = "notify"

WAITING_SWEEP_BATCH = 200
"""Waiting events looked at per sweep."""
PLAN_SLICE = 16
"""Events planned between two yields to the event loop: a batch of 200 takes some 30 ms of CPU,
which would otherwise stall the delivery workers' sends in flight."""


async def pause(i: int) -> None:
    """Let the event loop run other tasks after every :data:`PLAN_SLICE` events."""
    if i and i % PLAN_SLICE == 0:
        await asyncio.sleep(0)


class Planner(Protocol):
    """What planning needs of the process: the rules, the district and the delivery workers' wake-up."""

    rules: NotifyRules
    district: District

    def wake(self, channels: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class Received:
    """One domain event as notify received it: its subject and its contract model (``event_id`` set)."""

    subject: str
    event: BaseModel

    @property
    def facts(self) -> EventFacts:
        """What notify reads from the event (built anew on each access: read it once)."""
        return domain.facts_of(self.subject, self.event)


@dataclass
class PlanningResult:
    """What one planning transaction did."""

    planned: int = 0
    """Notifications inserted now (a redelivered event inserts none)."""
    channels: set[str] = field(default_factory=set)
    parked: int = 0
    released: int = 0


def concerns_notify(subject: str, rules: NotifyRules) -> bool:
    """Whether notify acts on ``subject``: a registration (its contact is kept) or a subject some rule names."""
    return subject == subjects.APPEAL_REGISTERED or any(
        domain.subject_matches(rule.subject, subject) for rule in rules.rules)


def _plan(planner: Planner, facts: EventFacts, contact: EnterpriseContact | None,
          now: datetime) -> list[tuple[PlannedNotification, str]]:
    planned = domain.plan_notifications(facts.subject, facts, planner.district, planner.rules, now, contact=contact,
                                        note=log.warning)
    return [(p, facts.correlation_id) for p in planned]


async def _insert(uow: NotifyUnitOfWork, planned: list[tuple[PlannedNotification, str]],
                  result: PlanningResult) -> None:
    channels = await uow.notifications.add_notifications(planned)
    for channel in channels:
        PLANNED.labels(channel).inc()
    result.planned += len(channels)
    result.channels |= set(channels)


async def plan_events(uow: NotifyUnitOfWork, planner: Planner, received: Sequence[Received],
                      now: datetime | None = None) -> PlanningResult:
    """Plan each event's notifications once, in one transaction; events needing an unknown contact wait for it.

    Events on subjects notify has no rule for are ignored. An event without an
    ``event_id`` is refused (``ValueError``): a notification's identity needs it.
    """
    now = now or clock.now()
    result = PlanningResult()
    events = []
    for i, r in enumerate(received):
        await pause(i)
        if concerns_notify(r.subject, planner.rules):
            events.append(r.facts)
    if not events:
        return result
    missing = [f.subject for f in events if not f.event_id]
    if missing:
        raise ValueError(f"{missing[0]}: an event without event_id (nor Nats-Msg-Id); a notification needs it")
    new_contacts = {
        f.appeal_id: (domain.contact_from_registered(f.event), f.event_id)
        for f in events
        if f.subject == subjects.APPEAL_REGISTERED and isinstance(f.event, AppealRegistered) and f.appeal_id
    }
    appeal_ids = {f.appeal_id for f in events if f.appeal_id}
    planned: list[tuple[PlannedNotification, str]] = []
    waiting: list[store.WaitingEvent] = []
    async with uow:
        repo = uow.notifications
        await repo.lock_appeals(appeal_ids)
        await repo.save_contacts(new_contacts)
        contacts = await repo.contacts_of(appeal_ids)
        for i, f in enumerate(events):
            await pause(i)
            contact = contacts.get(f.appeal_id) if f.appeal_id else None
            if contact is None and domain.needs_contact(f.subject, f, planner.rules):
                waiting.append(store.WaitingEvent(f.subject, f.event))
            else:
                planned += _plan(planner, f, contact, now)
        await repo.park(waiting, now)
        released = await repo.take_waiting_for(new_contacts)
        for i, w in enumerate(released):
            await pause(i)
            planned += _plan(planner, domain.facts_of(w.subject, w.event), contacts.get(w.appeal_id), now)
        await _insert(uow, planned, result)
    planner.wake(result.channels)
    result.parked, result.released = len(waiting), len(released)
    if waiting or released:
        log.info("events waiting for the enterprise contact", extra={"parked": len(waiting), "released": len(released)})
    return result


async def release_waiting(uow: NotifyUnitOfWork, planner: Planner, wait: timedelta = domain.CONTACT_WAIT,
                          now: datetime | None = None) -> int:
    """Plan the waiting events whose contact is known by now, or that waited longer than ``wait``
    (planned without it). Returns how many were planned."""
    now = now or clock.now()
    result = PlanningResult()
    async with uow:
        repo = uow.notifications
        candidates = await repo.waiting_to_release(now - wait, WAITING_SWEEP_BATCH)
        if not candidates:
            return 0
        await repo.lock_appeals(appeal_id for _, appeal_id in candidates)
        taken = await repo.take_waiting([event_id for event_id, _ in candidates])
        contacts = await repo.contacts_of(w.appeal_id for w in taken)
        planned: list[tuple[PlannedNotification, str]] = []
        for i, w in enumerate(taken):
            await pause(i)
            contact = contacts.get(w.appeal_id)
            if contact is None:
                log.warning("联系人未知，事件不再等待 / no contact arrived in time; planned without it",
                            extra={"subject": w.subject, "event_id": w.event_id, "appeal_id": w.appeal_id})
            planned += _plan(planner, domain.facts_of(w.subject, w.event), contact, now)
        await _insert(uow, planned, result)
    planner.wake(result.channels)
    return len(taken)


# --- delivery outcomes -------------------------------------------------------------------------------


def outcome_event(claim: store.Claim, outcome: domain.AttemptOutcome,
                  now: datetime) -> tuple[str, NotificationDelivered | NotificationFailed]:
    """The ``ct.notify.delivered`` / ``ct.notify.failed`` event of a final outcome (stable id per outcome)."""
    common = dict(
        event_id=domain.outcome_event_id(claim.notification_id, outcome.result),
        occurred_at=now, appeal_id=claim.appeal_id or "", correlation_id=claim.correlation_id, actor=SERVICE,
        notification_id=claim.notification_id, cause_event_id=claim.cause_event_id, channel=claim.channel,
        recipient=domain.mask_address(claim.channel, claim.address), template=claim.template,
        attempts=claim.attempt,
    )
    if outcome.result == "delivered":
        return subjects.NOTIFY_DELIVERED, NotificationDelivered(**common)
    return subjects.NOTIFY_FAILED, NotificationFailed(**common, error=outcome.error or "")


async def record_round(uow: NotifyUnitOfWork, recorded: Sequence[store.Recorded], now: datetime, *,
                       interrupted: Sequence[store.Claim] = (), unsent: Sequence[store.Claim] = ()) -> set[str]:
    """Record a delivery round in one transaction: the outcomes whose claim still holds, every attempt,
    the outcome events of the final ones, and the rows given back (``interrupted`` mid-send, ``unsent``
    never handed to their channel). Returns the ids whose claim held."""
    async with uow:
        repo = uow.notifications
        current = await repo.record_outcomes(recorded, now)
        await repo.add_attempts(recorded, now)
        uow.publish_all([outcome_event(r.claim, r.outcome, now) for r in recorded
                         if r.outcome.result != "retried" and r.claim.notification_id in current])
        await repo.release(interrupted, now)
        await repo.release(unsent, now, unsent=True)
    return current


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
UNKNOWN_PHONE_RULE = "SmsReplyMustAnswerARatingInvitation"
"""The rule an SMS reply from a phone never invited to rate breaks (answered 404)."""


@dataclass(frozen=True)
class SmsReply:
    """An SMS the gateway received (上行短信): its id, the sender's phone, the text."""

    message_id: str
    phone: str
    text: str
    received_at: datetime | None = None


@dataclass(frozen=True)
class SmsReplyAnswer:
    """The answer to an SMS reply; ``unknown_phone``: no rating invitation was delivered to that phone."""

    result: SmsReplyResult
    unknown_phone: bool = False


class _StagedFeedback(Feedback):
    """The feedback as staged in the outbox: its outbox id (and Nats-Msg-Id) is the feedback id."""

    event_id: str = Field(exclude=True)


async def receive_sms_reply(uow: NotifyUnitOfWork, reply: SmsReply) -> SmsReplyAnswer:
    """Read an SMS reply as the rating of the latest invitation sent to its phone; stage ``ct.in.feedback``
    once per gateway message id. A repeated id gets the first answer again, marked ``duplicate``."""
    rating = domain.parse_rating_reply(reply.text)
    async with uow:
        repo = uow.notifications
        appeal_id = await repo.appeal_invited_to_rate(reply.phone)
        if appeal_id is None:
            answer = SmsReplyAnswer(SmsReplyResult(accepted=False, reason=UNKNOWN_PHONE), unknown_phone=True)
        elif rating is None:
            answer = SmsReplyAnswer(SmsReplyResult(accepted=False, appeal_id=appeal_id, reason=NOT_UNDERSTOOD))
        else:
            answer = SmsReplyAnswer(SmsReplyResult(accepted=True, appeal_id=appeal_id, rating=rating,
                                                   feedback_id=domain.feedback_id_for_sms(reply.message_id)))
        result = answer.result
        fresh = await repo.save_inbound_sms(
            message_id=reply.message_id, phone=reply.phone, text=reply.text, received_at=reply.received_at,
            status_code=404 if answer.unknown_phone else 200, accepted=result.accepted, reason=result.reason,
            appeal_id=result.appeal_id, rating=result.rating.value if result.rating else None,
            feedback_id=result.feedback_id,
        )
        if not fresh:
            earlier = await repo.inbound_sms(reply.message_id)
            answer = SmsReplyAnswer(SmsReplyResult(
                accepted=earlier["accepted"], duplicate=True, appeal_id=earlier["appeal_id"],
                rating=earlier["rating"], feedback_id=earlier["feedback_id"], reason=earlier["reason"],
            ), unknown_phone=earlier["status_code"] == 404)
        elif result.accepted:
            uow.publish(subjects.IN_FEEDBACK, _StagedFeedback(
                event_id=result.feedback_id, feedback_id=result.feedback_id, appeal_id=result.appeal_id,
                rating=result.rating, comment=reply.text[:2000], via="sms",
            ))
    result = answer.result
    outcome = ("duplicate" if not fresh else "accepted" if result.accepted
               else "unknown_phone" if answer.unknown_phone else "not_understood")
    SMS_REPLIES.labels(outcome).inc()
    log.info("sms reply %s", outcome, extra={"message_id": reply.message_id, "phone": mask_phone(reply.phone),
                                              "appeal_id": result.appeal_id,
                                              "rating": result.rating.value if result.rating else None})
    return answer


# --- what the HTTP API shows ----------------------------------------------------------------------------


async def notifications_page(uow: NotifyUnitOfWork, appeal_id: str, limit: int,
                             after: store.ListPosition | None = None) -> list:
    """Up to ``limit + 1`` of an appeal's notifications after ``after``: the extra one says more follow."""
    async with uow:
        return await uow.notifications.notifications_of(appeal_id, limit + 1, after)


async def notification_detail(uow: NotifyUnitOfWork, notification_id: str) -> tuple[object, list] | None:
    """One notification with every delivery attempt, or None when there is no such notification."""
    async with uow:
        row = await uow.notifications.notification(notification_id)
        if row is None:
            return None
        return row, await uow.notifications.attempts_of(notification_id)

