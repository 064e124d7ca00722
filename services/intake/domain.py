"""Intake rules, pure: what an inbound message registers, what enters a timeline, and an appeal's status.

Every channel becomes the same :class:`NewAppeal`; its identity is
(channel, source id), never the message id, so a call republished under
another ``Nats-Msg-Id`` is still one appeal. Every domain event about an appeal
becomes one :class:`TimelineEntry`, read from its contract model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from pydantic import BaseModel

from services.intake.duplicates import DuplicateLink, Match
from shared.contracts import (
    SHANGHAI,
    AppAppeal,
    AppealClosed,
    AppealEscalated,
    AppealKind,
    AppealMerged,
    AppealQueued,
    AppealRegistered,
    AppealReopened,
    AppealSplit,
    AppealStatus,
    Channel,
    ClockEntry,
    DeadlineMoved,
    DeadlineSet,
    DeadlineWarning,
    EventProposal,
    EventRecord,
    ExtensionDenied,
    ExtensionGranted,
    ExtensionRequested,
    FieldError,
    FollowerReplied,
    HotlineCall,
    NotificationDelivered,
    NotificationFailed,
    OrderDispatched,
    OrderPaused,
    OrderProgressed,
    OrderReplied,
    OrderResumed,
    OrderReturned,
    OrderSigned,
    Party,
    ReceptionRecord,
    ReturnDecided,
    TimelineItem,
    mask_phone,
    subjects,
)

#: what arrives on ``ct.in.appeal.*`` and ``ct.in.event``
InboundAppeal = HotlineCall | AppAppeal | ReceptionRecord | EventRecord


@dataclass(frozen=True)
class NewAppeal:
    """An appeal about to be registered (诉求登记), whatever channel it came on."""

    channel: Channel
    source_id: str
    content: str
    kind: AppealKind
    received_at: datetime
    enterprise_name: str | None = None
    enterprise_uscc: str | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    title: str | None = None
    category_hint: str | None = None
    address: str | None = None
    urgent: bool = False
    proposal: EventProposal | None = None

    @property
    def source_ref(self) -> str:
        """``<channel>:<source id>``, the reference every event about this appeal carries."""
        return f"{self.channel.value}:{self.source_id}"


def from_hotline(call: HotlineCall) -> NewAppeal:
    """A hotline call registers one appeal; the caller is the contact."""
    return NewAppeal(
        channel=Channel.hotline, source_id=call.call_id, content=call.content, kind=call.kind,
        received_at=call.received_at, enterprise_name=call.enterprise_name, enterprise_uscc=call.enterprise_uscc,
        contact_name=call.caller_name, contact_phone=call.caller_phone, category_hint=call.category_hint,
        address=call.address, urgent=call.urgent,
    )


def from_app(appeal: AppAppeal) -> NewAppeal:
    """An online appeal from the app registers one appeal."""
    return NewAppeal(
        channel=Channel.app, source_id=appeal.submission_id, content=appeal.content, kind=appeal.kind,
        received_at=appeal.submitted_at, enterprise_name=appeal.enterprise_name,
        enterprise_uscc=appeal.enterprise_uscc, contact_name=appeal.contact_name,
        contact_phone=appeal.contact_phone, title=appeal.title, category_hint=appeal.category_hint,
        address=appeal.address,
    )


def from_reception(record: ReceptionRecord) -> NewAppeal:
    """A reception-day, chief-representative or tea-talk record registers one appeal on its own channel."""
    return NewAppeal(
        channel=Channel(record.channel.value), source_id=record.record_id, content=record.content,
        kind=record.kind, received_at=record.received_at, enterprise_name=record.enterprise_name,
        enterprise_uscc=record.enterprise_uscc, contact_name=record.contact_name,
        contact_phone=record.contact_phone, category_hint=record.category_hint, address=record.address,
    )


def event_item_source_id(event_id: str, item_no: int) -> str:
    """The source id of one item of a coffee event: ``<event_id>#<item_no>``."""
    return f"{event_id}#{item_no}"


def from_event(record: EventRecord) -> list[NewAppeal]:
    """A coffee-event record registers one appeal per item, carrying the organiser's proposals.

    The event has a date, not a time: the appeal counts as received at the start of
    that day in Asia/Shanghai (the day itself is never counted in a deadline).
    """
    received = datetime.combine(record.date, time(0, 0), tzinfo=SHANGHAI)
    out = []
    for item in record.items:
        proposal = EventProposal(
            event_id=record.event_id, event_kind=record.kind.value, event_date=record.date.isoformat(),
            theme=record.theme, organizer_unit=record.organizer_unit, item_no=item.item_no,
            proposed_unit=item.proposed_unit, proposed_opinion=item.proposed_opinion,
            proposed_deadline_days=item.proposed_deadline_days,
        )
        out.append(NewAppeal(
            channel=Channel.coffee_event, source_id=event_item_source_id(record.event_id, item.item_no),
            content=item.content, kind=AppealKind.appeal, received_at=received,
            enterprise_name=item.enterprise_name, enterprise_uscc=item.enterprise_uscc,
            contact_name=item.contact_name, contact_phone=item.contact_phone,
            category_hint=item.category_hint, proposal=proposal,
        ))
    return out


def appeals_from(message: InboundAppeal) -> list[NewAppeal]:
    """The appeals one inbound message registers: one, or one per item of a coffee event."""
    match message:
        case HotlineCall():
            return [from_hotline(message)]
        case AppAppeal():
            return [from_app(message)]
        case ReceptionRecord():
            return [from_reception(message)]
        case EventRecord():
            return from_event(message)
    raise TypeError(f"{type(message).__name__} registers no appeal")


#: the field holding the sender's own id, named in a rejection where it could be read
SOURCE_ID_FIELD: dict[type[InboundAppeal], str] = {
    HotlineCall: "call_id", AppAppeal: "submission_id", ReceptionRecord: "record_id", EventRecord: "event_id",
}


@dataclass(frozen=True)
class InvalidMessage:
    """An inbound message that does not fit its contract, as the rejection will name it."""

    key: str  # unique to the stored message: the rejection is published once per key
    subject: str
    source_id: str | None
    msg_id: str | None
    errors: Sequence[FieldError]


def registered_event(appeal: NewAppeal, appeal_id: str, now: datetime, correlation_id: str,
                     duplicate: Match | None = None) -> AppealRegistered:
    """The event announcing a newly registered appeal; for a likely duplicate, the master it follows."""
    return AppealRegistered(
        duplicate_of=duplicate.master_appeal_id if duplicate else None,
        similarity=duplicate.similarity if duplicate else None,
        occurred_at=now, appeal_id=appeal_id, source_ref=appeal.source_ref, correlation_id=correlation_id,
        actor=appeal.channel.value, channel=appeal.channel, source_id=appeal.source_id,
        enterprise=Party(name=appeal.enterprise_name, uscc=appeal.enterprise_uscc),
        contact=Party(name=appeal.contact_name, phone=appeal.contact_phone),
        content=appeal.content, title=appeal.title, category_hint=appeal.category_hint, address=appeal.address,
        kind=appeal.kind, urgent=appeal.urgent, received_at=appeal.received_at, proposal=appeal.proposal,
    )


def merged_event(registered: AppealRegistered, duplicate: Match) -> AppealMerged:
    """``ct.appeal.merged`` for a duplicate, beside its registration.

    It occurs a microsecond after the registration: the timeline sorts by time,
    and the status after both is ``merged``.
    """
    return AppealMerged(
        occurred_at=registered.occurred_at + timedelta(microseconds=1), appeal_id=registered.appeal_id,
        source_ref=registered.source_ref, correlation_id=registered.correlation_id, actor="system",
        master_appeal_id=duplicate.master_appeal_id, similarity=duplicate.similarity,
    )


def split_event(link: DuplicateLink, now: datetime, actor: str, reason: str | None) -> AppealSplit:
    """``ct.appeal.split``: the duplicate of ``link`` is handled on its own from now on."""
    assert link.master_appeal_id is not None
    return AppealSplit(occurred_at=now, appeal_id=link.appeal_id, source_ref=link.source_ref,
                       correlation_id=f"split:{link.appeal_id}", actor=actor,
                       master_appeal_id=link.master_appeal_id, reason=reason)


# --- the timeline and the status --------------------------------------------------------

# the status an appeal is in after each kind of event; events not listed leave it as it was
_STATUS_AFTER = {
    "ct.appeal.registered": "registered",
    "ct.appeal.queued": "awaiting_dispatch",
    "ct.order.dispatched": "dispatched",
    "ct.order.signed": "in_progress",
    "ct.order.returned": "returned",
    "ct.order.return_decided": "dispatched",
    "ct.order.replied": "replied",
    "ct.appeal.reopened": "reopened",
    "ct.appeal.closed": "closed",
    "ct.appeal.merged": "merged",
    "ct.appeal.split": "registered",
    "ct.appeal.follower_replied": "replied",
}


@dataclass(frozen=True)
class TimelineEntry:
    """One line of an appeal's timeline (办理过程): who did what, when; the event itself kept beside it."""

    event_id: str
    appeal_id: str
    subject: str
    occurred_at: datetime
    actor: str
    what: str
    payload: BaseModel | None = None  # the event, as received; None when read back from the timeline
    #: the event's JSON as it was delivered, stored as the payload as it is (the bytes the producer's outbox
    #: wrote from the same contract model): no second serialisation; None: the store writes ``payload``'s
    body: bytes | None = None


def _field(event: BaseModel, name: str):
    """The value of the event's field ``name``; None when its model has no such field.

    Read from the instance's ``__dict__`` (where pydantic keeps the fields): ``getattr(event, name, None)``
    of a missing name goes through pydantic's ``__getattr__`` and an ``AttributeError``, 1-2 µs each, a
    third of a timeline entry's cost for the events without a unit or an actor.
    """
    return event.__dict__.get(name)


def describe(subject: str, event: BaseModel) -> str:
    """One line saying what happened, for the timeline (who and when are kept beside it)."""
    unit = _field(event, "unit") or _field(event, "unit_code") or ""
    match event:
        case AppealRegistered():
            return f"registered from {event.channel.value} ({event.source_id})"
        case AppealQueued():
            return "waiting in the lead unit's manual queue: " + "; ".join(event.reasons)
        case OrderDispatched():
            reasons = "; ".join(event.reasons)
            return f"order {event.order_id} dispatched to {unit} ({event.role})" + (f": {reasons}" if reasons else "")
        case OrderSigned():
            return f"{unit} signed for order {event.order_id}"
        case OrderReturned():
            return f"{unit} returned order {event.order_id}: {event.reason}"
        case OrderProgressed():
            return f"{unit} reported progress: {event.note}"
        case ExtensionRequested():
            return f"{unit} asked for {event.days} more working days: {event.reason}"
        case ExtensionGranted():
            return f"extension of {event.days} working days granted to {unit}"
        case ExtensionDenied():
            return f"extension denied to {unit}: {event.reason}"
        case OrderReplied():
            state = "resolved" if event.resolved else "not resolved"
            return f"{unit} replied ({state}): {event.reply}"
        case OrderPaused():
            return f"{unit} paused the handling clock (待补充材料): {event.pause.reason}"
        case OrderResumed():
            return f"{unit} resumed the handling clock" + (f": {event.note}" if event.note else "")
        case AppealMerged():
            similarity = f" (similarity {event.similarity:.2f})" if event.similarity is not None else ""
            return f"likely duplicate of {event.master_appeal_id}{similarity}: follows it, no order of its own"
        case AppealSplit():
            why = f": {event.reason}" if event.reason else ""
            return f"split from {event.master_appeal_id}, handled on its own{why}"
        case FollowerReplied():
            state = "resolved" if event.resolved else "not resolved"
            return f"{unit} replied to the master appeal {event.master_appeal_id} ({state}): {event.reply}"
        case AppealClosed():
            return f"closed: {event.outcome}"
        case AppealReopened():
            return f"reopened to {unit} (重办 #{event.reopen_count})"
        case DeadlineSet():
            why = f" ({event.cause})" if event.cause else ""
            return f"{event.clock} deadline for {event.unit_code}: {event.due_at.isoformat()}{why}"
        case DeadlineWarning():
            return f"warning ({event.level}) to {unit}: due {event.due_at.isoformat()}"
        case AppealEscalated():
            return f"escalated to {event.level}: {event.reason}"
        case NotificationDelivered():
            return f"{event.channel} sent to {event.recipient} ({event.template})"
        case NotificationFailed():
            return f"{event.channel} to {event.recipient} failed: {event.error}"
    return subject.removeprefix("ct.").replace(".", " ")


def timeline_entry(subject: str, event: BaseModel, fallback_id: str | None,
                   body: bytes | None = None) -> TimelineEntry | None:
    """The timeline row for a domain event, or None when the event concerns no appeal (a rejection, a list).

    ``body`` is the JSON ``event`` was read from, kept as the row's payload.
    """
    appeal_id = _field(event, "appeal_id")
    event_id = _field(event, "event_id") or fallback_id
    occurred = _field(event, "occurred_at")
    if not appeal_id or not event_id or not occurred:
        return None
    return TimelineEntry(
        event_id=event_id, appeal_id=appeal_id, subject=subject, occurred_at=occurred,
        actor=str(_field(event, "actor") or "system"), what=describe(subject, event), payload=event,
        body=body,
    )


def status_of(subjects_in_order: list[str]) -> str:
    """The appeal's status from its timeline's subjects, oldest first."""
    status = "registered"
    for subject in subjects_in_order:
        status = _STATUS_AFTER.get(subject, status)
    return status


@dataclass(frozen=True)
class RegisteredAppeal:
    """An appeal as intake keeps it, with what its public status shows."""

    appeal_id: str
    channel: str
    source_id: str
    content: str
    kind: str
    received_at: datetime
    registered_at: datetime
    enterprise_name: str | None = None
    contact_phone: str | None = None


#: The subjects the clock timeline reads (their payloads are read back with the timeline).
CLOCK_SUBJECTS = frozenset({
    subjects.ORDER_DISPATCHED, subjects.ORDER_SIGNED, subjects.ORDER_PAUSED, subjects.ORDER_RESUMED,
    subjects.ORDER_EXTENSION_GRANTED, subjects.ORDER_REPLIED, subjects.ORDER_RETURN_DECIDED, subjects.DEADLINE_SET,
    subjects.DEADLINE_MOVED, subjects.DEADLINE_WARNING, subjects.APPEAL_ESCALATED, subjects.APPEAL_CLOSED,
    subjects.APPEAL_REOPENED,
})


def _clock_entry(event: BaseModel) -> ClockEntry | None:
    """What one event did to the appeal's clocks, with its cause; None when it did nothing to them."""
    base = {"at": event.occurred_at, "order_id": _field(event, "order_id"), "unit_code": _field(event, "unit_code")}
    unit = _field(event, "unit") or base["unit_code"] or ""
    match event:
        case OrderDispatched():
            why = (f"re-dispatched to {unit} (replaces {event.replaces_order_id}): the appeal's clock keeps running "
                   f"from receipt, {unit}'s own clock starts at its sign-for") if event.replaces_order_id and                 not event.reopen_count else f"dispatched to {unit}"
            if event.pauses:
                why += f"; {len(event.pauses)} earlier pause(s) kept"
            return ClockEntry(**base, kind="started", clock="handling", cause=why)
        case OrderSigned():
            return ClockEntry(**base, kind="stopped", clock="sign_for", cause=f"{unit} signed for the order")
        case OrderPaused():
            return ClockEntry(**base, kind="paused", clock="handling",
                              cause=f"{unit} waits for the enterprise (待补充材料): {event.pause.reason}")
        case OrderResumed():
            return ClockEntry(**base, kind="resumed", clock="handling",
                              cause=f"{unit} resumed" + (f": {event.note}" if event.note else ""))
        case ExtensionGranted():
            return ClockEntry(**base, kind="extension", clock="handling",
                              cause=f"extension of {event.days} working days granted ({event.total_extension_days} in all)")
        case DeadlineSet():
            why = {"started": "clock started", "extension": "extension granted", "paused": "clock paused: due so if "
                   "the pause runs its full length", "resumed": "clock resumed: moved by the paused working time",
                   "calendar_revised": "official calendar revised", "reopened": "appeal reopened (重办)",
                   "replanned": "re-planned"}.get(event.cause or "", "deadline set")
            if event.paused_working_seconds:
                why += f"; paused {event.paused_working_seconds // 60} working minutes so far"
            return ClockEntry(**base, kind="deadline", clock=event.clock, due_at=event.due_at, cause=why)
        case DeadlineMoved():
            return ClockEntry(**base, kind="moved", clock=event.clock, due_at=event.due_at,
                              cause=event.reason or event.cause)
        case DeadlineWarning():
            return ClockEntry(**base, kind="warning", clock=event.clock, due_at=event.due_at, level=event.level,
                              cause=event.reason, late_seconds=event.late_seconds)
        case AppealEscalated():
            return ClockEntry(**base, kind="escalation", clock=event.clock, due_at=event.due_at, level=event.level,
                              cause=event.reason, late_seconds=event.late_seconds)
        case OrderReplied():
            return ClockEntry(**base, kind="stopped", clock="handling", cause=f"{unit} replied")
        case ReturnDecided() if event.accepted:
            return ClockEntry(**base, kind="stopped", clock="handling", cause=f"order taken from {unit}")
        case AppealClosed():
            return ClockEntry(**base, kind="stopped", clock="handling", cause=f"appeal closed ({event.outcome})")
        case AppealReopened():
            return ClockEntry(**base, kind="started", clock="handling",
                              cause=f"reopened to {unit} (重办): a new handling clock from now")
    return None


def clock_timeline(timeline: Sequence[TimelineEntry]) -> tuple[list[ClockEntry], bool]:
    """The appeal's clock timeline (each start, pause, resume, extension, warning, escalation with its cause),
    and whether a handling clock is paused now (a pause not yet resumed, on an order still running)."""
    entries, paused = [], set()
    for t in timeline:
        if t.payload is None:
            continue
        entry = _clock_entry(t.payload)
        if entry is None:
            continue
        entries.append(entry)
        if entry.kind == "paused":
            paused.add(entry.order_id)
        elif entry.kind in ("resumed", "stopped") and entry.clock == "handling":
            if entry.order_id:
                paused.discard(entry.order_id)
            else:  # the appeal closed: every clock stopped
                paused.clear()
    return entries, bool(paused)


def status_reply(appeal: RegisteredAppeal, timeline: Sequence[TimelineEntry]) -> AppealStatus:
    """The public status of an appeal (the reply to ``ct.q.appeal``): its state and timeline, the phone masked."""
    clock, paused = clock_timeline(timeline)
    return AppealStatus(
        appeal_id=appeal.appeal_id, channel=appeal.channel, source_id=appeal.source_id,
        status=status_of([t.subject for t in timeline]), enterprise_name=appeal.enterprise_name,
        contact_phone=mask_phone(appeal.contact_phone) if appeal.contact_phone else None,
        kind=appeal.kind, content=appeal.content, received_at=appeal.received_at,
        registered_at=appeal.registered_at,
        timeline=[TimelineItem(at=t.occurred_at, subject=t.subject, actor=t.actor, what=t.what) for t in timeline],
        clock=clock, paused=paused,
    )


def not_found(appeal_id: str | None, channel: str | None, source_id: str | None) -> AppealStatus:
    """The status reply when no appeal matches."""
    return AppealStatus(found=False, appeal_id=appeal_id, channel=channel, source_id=source_id,
                        error="no such appeal")
