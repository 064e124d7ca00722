"""Subject names and JetStream streams, in one place.

Streams never cover `ct.q.>` (request-reply): a stream on a query subject would
answer the request itself with a PubAck (see STACK-NOTES.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import events as ev
from shared.contracts import inbound as inb

# inbound (public contract)
IN_HOTLINE = "ct.in.appeal.hotline"
IN_APP = "ct.in.appeal.app"
IN_RECEPTION = "ct.in.appeal.reception"
IN_EVENT = "ct.in.event"
IN_ORDER = "ct.in.order.{unit_code}.{action}"
IN_ORDER_ALL = "ct.in.order.*.*"
IN_FEEDBACK = "ct.in.feedback"
Q_APPEAL = "ct.q.appeal"

# domain events
APPEAL_REGISTERED = "ct.appeal.registered"
APPEAL_REJECTED = "ct.appeal.rejected"
APPEAL_MERGED = "ct.appeal.merged"
APPEAL_SPLIT = "ct.appeal.split"
APPEAL_FOLLOWER_REPLIED = "ct.appeal.follower_replied"
APPEAL_QUEUED = "ct.appeal.queued"
APPEAL_CLOSED = "ct.appeal.closed"
APPEAL_REOPENED = "ct.appeal.reopened"
APPEAL_ESCALATED = "ct.appeal.escalated"
APPEAL_FOLLOW_UP_DRAWN = "ct.appeal.follow_up_drawn"
APPEAL_FOLLOW_UP_CONTRADICTED = "ct.appeal.follow_up_contradicted"
ORDER_DISPATCHED = "ct.order.dispatched"
ORDER_SIGNED = "ct.order.signed"
ORDER_RETURNED = "ct.order.returned"
ORDER_RETURN_DECIDED = "ct.order.return_decided"
ORDER_PROGRESSED = "ct.order.progressed"
ORDER_EXTENSION_REQUESTED = "ct.order.extension_requested"
ORDER_EXTENSION_GRANTED = "ct.order.extension_granted"
ORDER_EXTENSION_DENIED = "ct.order.extension_denied"
ORDER_PAUSED = "ct.order.paused"
ORDER_RESUMED = "ct.order.resumed"
ORDER_REPLIED = "ct.order.replied"
ORDER_ESCALATION_REQUESTED = "ct.order.escalation_requested"
ORDER_REJECTED = "ct.order.rejected"
DEADLINE_SET = "ct.deadline.set"
DEADLINE_MOVED = "ct.deadline.moved"
DEADLINE_WARNING = "ct.deadline.warning"
DEADLINE_MONTHLY_LIST = "ct.deadline.monthly_list"
NOTIFY_DELIVERED = "ct.notify.delivered"
NOTIFY_FAILED = "ct.notify.failed"

# dead letters: ct.dlq.<service>.<original subject>
DLQ_PREFIX = "ct.dlq"


def dead_letter_subject(service: str, subject: str) -> str:
    return f"{DLQ_PREFIX}.{service}.{subject}"


def order_action_subject(unit_code: str, action: str) -> str:
    return IN_ORDER.format(unit_code=unit_code, action=action)


@dataclass(frozen=True)
class StreamDef:
    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_days: int = 30
    duplicate_window_s: int = 600


STREAM_IN = StreamDef("CT_IN", ("ct.in.>",), "Inbound messages from outside systems and units")
STREAM_EVENTS = StreamDef(
    "CT_EVENTS",
    ("ct.appeal.>", "ct.order.>", "ct.deadline.>", "ct.notify.>"),
    "Domain events",
)
STREAM_DLQ = StreamDef("CT_DLQ", (f"{DLQ_PREFIX}.>",), "Messages that kept failing", max_age_days=90)
STREAMS: tuple[StreamDef, ...] = (STREAM_IN, STREAM_EVENTS, STREAM_DLQ)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def stream_for(subject: str) -> StreamDef:
    """The stream that stores ``subject`` (which may itself be a wildcard filter such as ``ct.order.>``)."""
    for s in STREAMS:
        if any(subject_matches(pattern, subject) for pattern in s.subjects):
            return s
    raise KeyError(f"no stream covers {subject}")


# subject → model: the registry the AsyncAPI document and the docs are generated from
INBOUND: dict[str, type] = {
    IN_HOTLINE: inb.HotlineCall,
    IN_APP: inb.AppAppeal,
    IN_RECEPTION: inb.ReceptionRecord,
    IN_EVENT: inb.EventRecord,
    IN_ORDER: inb.UnitAction,
    IN_FEEDBACK: inb.Feedback,
    Q_APPEAL: inb.AppealQuery,
}

EVENTS: dict[str, type] = {
    APPEAL_REGISTERED: ev.AppealRegistered,
    APPEAL_REJECTED: ev.AppealRejected,
    APPEAL_MERGED: ev.AppealMerged,
    APPEAL_SPLIT: ev.AppealSplit,
    APPEAL_FOLLOWER_REPLIED: ev.FollowerReplied,
    APPEAL_QUEUED: ev.AppealQueued,
    APPEAL_CLOSED: ev.AppealClosed,
    APPEAL_REOPENED: ev.AppealReopened,
    APPEAL_ESCALATED: ev.AppealEscalated,
    APPEAL_FOLLOW_UP_DRAWN: ev.FollowUpDrawn,
    APPEAL_FOLLOW_UP_CONTRADICTED: ev.FollowUpContradicted,
    ORDER_DISPATCHED: ev.OrderDispatched,
    ORDER_SIGNED: ev.OrderSigned,
    ORDER_RETURNED: ev.OrderReturned,
    ORDER_RETURN_DECIDED: ev.ReturnDecided,
    ORDER_PROGRESSED: ev.OrderProgressed,
    ORDER_EXTENSION_REQUESTED: ev.ExtensionRequested,
    ORDER_EXTENSION_GRANTED: ev.ExtensionGranted,
    ORDER_EXTENSION_DENIED: ev.ExtensionDenied,
    ORDER_PAUSED: ev.OrderPaused,
    ORDER_RESUMED: ev.OrderResumed,
    ORDER_REPLIED: ev.OrderReplied,
    ORDER_ESCALATION_REQUESTED: ev.EscalationRequested,
    ORDER_REJECTED: ev.OrderRejected,
    DEADLINE_SET: ev.DeadlineSet,
    DEADLINE_MOVED: ev.DeadlineMoved,
    DEADLINE_WARNING: ev.DeadlineWarning,
    DEADLINE_MONTHLY_LIST: ev.MonthlyList,
    NOTIFY_DELIVERED: ev.NotificationDelivered,
    NOTIFY_FAILED: ev.NotificationFailed,
}


# the NATS filter of each inbound subject whose name is a template
_INBOUND_FILTERS: dict[str, str] = {IN_ORDER: IN_ORDER_ALL}


def contract_for(subject: str) -> type:
    """The contract model of a concrete subject (``ct.in.order.sanitation.sign`` → ``UnitAction``)."""
    model = EVENTS.get(subject) or INBOUND.get(subject)
    if model is not None:
        return model
    for template, pattern in _INBOUND_FILTERS.items():
        if subject_matches(pattern, subject):
            return INBOUND[template]
    raise KeyError(f"no contract model for {subject}")


def contracts_under(pattern: str) -> dict[str, type]:
    """Every contracted subject a consumer filter covers (``ct.order.>`` → the work-order events)."""
    found = {s: m for s, m in EVENTS.items() if subject_matches(pattern, s)}
    for s, m in INBOUND.items():
        f = _INBOUND_FILTERS.get(s, s)
        if subject_matches(pattern, f) or subject_matches(f, pattern):  # a filter under a template counts too
            found[s] = m
    return found
