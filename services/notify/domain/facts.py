"""What notify reads from an event: one typed view, built from the event's contract model in one place.

Notify hears some twenty kinds of event (``shared.contracts.events``). Each says a few
of the things a message may mention: a unit, a deadline, a reply, a rating, the
targets of an escalation. :func:`facts_of` reads them from the model once, so the
recipients, the template variables and the wait for the contact read named, typed
fields (:class:`EventFacts`) instead of looking keys up in a dict. A field an event
does not carry is ``None`` (or empty). The rules' ``when`` conditions read the model
itself (:attr:`EventFacts.event`), as the rules file names the contract's fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel

from shared.contracts.events import LateOrder, MonthlyListItem, Party, Person


@dataclass(frozen=True)
class ListItem:
    """One line of the monthly list (``ct.deadline.monthly_list``)."""

    appeal_id: str
    unit: str
    enterprise: str = ""
    summary: str = ""
    due_at: datetime | None = None
    overdue_seconds: int = 0
    level: str | None = None

    @classmethod
    def of(cls, item: MonthlyListItem) -> ListItem:
        """The line of a list item: how late it was when publicly noticed (通报), if its deadline is known."""
        late = int((item.noticed_at - item.due_at).total_seconds()) if item.due_at is not None else 0
        return cls(appeal_id=item.appeal_id, unit=item.unit or item.unit_code, summary=item.summary,
                   due_at=item.due_at, overdue_seconds=max(0, late), level=item.level)


@dataclass(frozen=True)
class LateOrderLine:
    """One late work order an appeal's escalation names (``AppealEscalated.late_orders``)."""

    order_id: str
    unit_code: str
    unit: str = ""
    role: str | None = None
    due_at: datetime | None = None
    overdue_seconds: int = 0

    @classmethod
    def of(cls, order: LateOrder) -> LateOrderLine:
        """The line of a late order, as the event gives it."""
        return cls(order_id=order.order_id, unit_code=order.unit_code, unit=order.unit, role=order.role,
                   due_at=order.due_at, overdue_seconds=order.overdue_seconds)


@dataclass(frozen=True)
class EventFacts:
    """Everything notify's rules read from one event, whatever its kind; absent fields are ``None``."""

    subject: str
    event: BaseModel = field(repr=False)
    """The contract model itself, for the rules' ``when`` conditions."""
    event_id: str = ""
    appeal_id: str | None = None
    correlation_id: str = ""
    urgent: bool = False
    # the enterprise, as far as the event names it
    contact_name: str | None = None
    contact_phone: str | None = None
    enterprise_name: str | None = None
    # the work order and its unit
    order_id: str | None = None
    unit_code: str | None = None
    unit: str | None = None
    role: str | None = None
    category: str | None = None
    category_hint: str | None = None
    # what happened
    summary: str = ""
    reasons: tuple[str, ...] = ()
    reason: str = ""
    reply: str | None = None
    resolved: bool | None = None
    """``None``: the event says nothing about it (only a reply does)."""
    deadline_days: int | None = None
    sign_hours: float | None = None
    clock: str | None = None
    due_at: datetime | None = None
    previous_due_at: datetime | None = None
    """The deadline before a revised calendar moved it (``ct.deadline.moved``)."""
    working_days: int | None = None
    """How many working days it moved (negative: earlier)."""
    level: str | None = None
    days: int | None = None
    return_count: int | None = None
    reopen_count: int | None = None
    overdue_seconds: int = 0
    outcome: str | None = None
    answer: str | None = None
    comment: str | None = None
    leaders_named: tuple[str, ...] = ()
    """District leaders the event's targets name."""
    month: str | None = None
    items: tuple[ListItem, ...] = ()
    late_orders: tuple[LateOrderLine, ...] = ()
    """The late orders an appeal's escalation to the leader or the supervision office names."""


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def facts_of(subject: str, event: BaseModel) -> EventFacts:
    """The typed view of ``event`` (a contract model that arrived on ``subject``).

    The one place where the different event models are read; every other module of
    the domain reads :class:`EventFacts`.
    """
    fields = event.__dict__  # the contract model's fields (extra="ignore": nothing else): a missing name is None,
    # not an AttributeError raised through pydantic's __getattr__ (0.8 of notify's profiled seconds, issue 12)

    def get(name: str):
        return fields.get(name)

    contact, enterprise = get("contact"), get("enterprise")
    targets = get("targets") or []
    reasons = get("reasons")
    resolved = get("resolved")
    return EventFacts(
        subject=subject,
        event=event,
        event_id=str(get("event_id") or ""),
        appeal_id=_text(get("appeal_id")),
        correlation_id=str(get("correlation_id") or ""),
        urgent=bool(get("urgent")),
        contact_name=_text(contact.name) if isinstance(contact, Party) else None,
        contact_phone=(_text(contact.phone) if isinstance(contact, Party) else None) or _text(get("contact_phone")),
        enterprise_name=(_text(enterprise.name) if isinstance(enterprise, Party) else _text(enterprise))
        or _text(get("enterprise_name")),
        order_id=_text(get("order_id")),
        unit_code=_text(get("unit_code")),
        unit=_text(get("unit")),
        role=_text(get("role")),
        category=_text(get("category")),
        category_hint=_text(get("category_hint")),
        summary=str(get("summary") or get("title") or get("content") or ""),
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
        reason=str(get("reason") or ""),
        reply=_text(get("reply")),
        resolved=resolved if isinstance(resolved, bool) else None,
        deadline_days=get("deadline_days"),
        sign_hours=get("sign_hours"),
        clock=_text(get("clock")),
        due_at=get("due_at") if isinstance(get("due_at"), datetime) else None,
        previous_due_at=get("previous_due_at") if isinstance(get("previous_due_at"), datetime) else None,
        working_days=get("working_days") if isinstance(get("working_days"), int) else None,
        level=_text(get("level")),
        days=get("days"),
        return_count=get("return_count"),
        reopen_count=get("reopen_count"),
        overdue_seconds=int(get("overdue_seconds") or 0),
        outcome=_text(get("outcome")),
        answer=_text(get("answer")),
        comment=_text(get("comment")),
        leaders_named=tuple(t.name for t in targets
                            if isinstance(t, Person) and t.role == "district_leader" and t.name),
        month=_text(get("month")),
        items=tuple(ListItem.of(i) for i in get("items") or [] if isinstance(i, MonthlyListItem)),
        late_orders=tuple(LateOrderLine.of(o) for o in get("late_orders") or [] if isinstance(o, LateOrder)),
    )
