"""Intake rules, pure: what an inbound message registers, and what an appeal's status is.

Every channel becomes the same :class:`NewAppeal`; its identity is
(channel, source id), never the message id, so a call republished under
another ``Nats-Msg-Id`` is still one appeal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time

from shared.contracts import (
    SHANGHAI,
    AppAppeal,
    AppealKind,
    AppealRegistered,
    Channel,
    EventProposal,
    EventRecord,
    HotlineCall,
    Party,
    ReceptionRecord,
)


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


def registered_event(appeal: NewAppeal, appeal_id: str, now: datetime, correlation_id: str) -> AppealRegistered:
    """The event announcing a newly registered appeal."""
    return AppealRegistered(
        occurred_at=now, appeal_id=appeal_id, source_ref=appeal.source_ref, correlation_id=correlation_id,
        actor=appeal.channel.value, channel=appeal.channel, source_id=appeal.source_id,
        enterprise=Party(name=appeal.enterprise_name, uscc=appeal.enterprise_uscc),
        contact=Party(name=appeal.contact_name, phone=appeal.contact_phone),
        content=appeal.content, title=appeal.title, category_hint=appeal.category_hint, address=appeal.address,
        kind=appeal.kind, urgent=appeal.urgent, received_at=appeal.received_at, proposal=appeal.proposal,
    )


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
}


@dataclass(frozen=True)
class TimelineEntry:
    event_id: str
    appeal_id: str
    subject: str
    occurred_at: datetime
    actor: str
    what: str
    payload: dict = field(default_factory=dict, compare=False)


def describe(subject: str, event: dict) -> str:
    """One line saying what happened, for the timeline (who and when are kept beside it)."""
    unit = event.get("unit") or event.get("unit_code") or ""
    kind = subject.removeprefix("ct.")
    match subject:
        case "ct.appeal.registered":
            return f"registered from {event.get('channel')} ({event.get('source_id')})"
        case "ct.appeal.queued":
            return "waiting in the lead unit's manual queue: " + "; ".join(event.get("reasons") or [])
        case "ct.order.dispatched":
            reasons = "; ".join(event.get("reasons") or [])
            return f"order {event.get('order_id')} dispatched to {unit} ({event.get('role')})" + (f": {reasons}" if reasons else "")
        case "ct.order.signed":
            return f"{unit} signed for order {event.get('order_id')}"
        case "ct.order.returned":
            return f"{unit} returned order {event.get('order_id')}: {event.get('reason')}"
        case "ct.order.progressed":
            return f"{unit} reported progress: {event.get('note')}"
        case "ct.order.extension_requested":
            return f"{unit} asked for {event.get('days')} more working days: {event.get('reason')}"
        case "ct.order.extension_granted":
            return f"extension of {event.get('days')} working days granted to {unit}"
        case "ct.order.extension_denied":
            return f"extension denied to {unit}: {event.get('reason')}"
        case "ct.order.replied":
            state = "resolved" if event.get("resolved") else "not resolved"
            return f"{unit} replied ({state}): {event.get('reply')}"
        case "ct.appeal.closed":
            return f"closed: {event.get('outcome')}"
        case "ct.appeal.reopened":
            return f"reopened to {unit} (重办 #{event.get('reopen_count')})"
        case "ct.deadline.set":
            return f"{event.get('clock')} deadline for {event.get('unit_code')}: {event.get('due_at')}"
        case "ct.deadline.warning":
            return f"warning ({event.get('level')}) to {unit or event.get('unit_code')}: due {event.get('due_at')}"
        case "ct.appeal.escalated":
            return f"escalated to {event.get('level')}: {event.get('reason')}"
        case "ct.notify.delivered":
            return f"{event.get('channel')} sent to {event.get('recipient')} ({event.get('template')})"
        case "ct.notify.failed":
            return f"{event.get('channel')} to {event.get('recipient')} failed: {event.get('error')}"
    return kind.replace(".", " ")


def timeline_entry(subject: str, event: dict, fallback_id: str | None) -> TimelineEntry | None:
    """The timeline row for a domain event, or None when the event concerns no appeal."""
    appeal_id = event.get("appeal_id")
    event_id = event.get("event_id") or fallback_id
    occurred = event.get("occurred_at")
    if not appeal_id or not event_id or not occurred:
        return None
    return TimelineEntry(
        event_id=event_id, appeal_id=appeal_id, subject=subject,
        occurred_at=datetime.fromisoformat(occurred), actor=str(event.get("actor") or "system"),
        what=describe(subject, event), payload=event,
    )


def status_of(subjects_in_order: list[str]) -> str:
    """The appeal's status from its timeline's subjects, oldest first."""
    status = "registered"
    for subject in subjects_in_order:
        status = _STATUS_AFTER.get(subject, status)
    return status
