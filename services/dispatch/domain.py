"""Dispatch rules, pure: routing an appeal to a unit, and the life of a work order.

Nothing here does I/O. Every function takes what it needs (the district
configuration, the current states, ``now``) and returns new immutable states
plus the events they cause, as :class:`EventSpec` values that the handler turns
into the models of ``shared.contracts.events`` and writes to its outbox in the
same transaction as the states.

Routing (派单)
--------------
:func:`route` scores every handling unit of the district:

=====================================  ===========================
keyword of a rule found in the content  +1 x the rule's weight
area of a rule found in content/address +2 x the rule's weight
category hint listed by a rule          +1 x the rule's weight
the category's default unit             +2
unit named in the content               +2
unit proposed at a coffee event         +6
=====================================  ===========================

A rule that lists areas is *local*: it counts only when one of its areas is
found (a town's keywords mean something only on its own ground, 属地). Where one
matched term contains another of the same rule (左转车道 and 左转) only the
longer counts. The best unit leads when it scores at least
``district.min_score`` and leads the runner-up by ``district.min_margin``;
otherwise the appeal waits in the lead unit's manual queue. Units named as
co-handlers, and units whose content matched and that score at least
``min_score`` and ``district.co_share`` of the lead's score, co-handle (协办).

The work order (工单)
---------------------
States (:class:`OrderStatus`)::

    dispatched ─sign─> signed ─reply─> replied ─feedback satisfied─> closed
        │                │                    └─feedback unsatisfied─> reopened (+ a new order, same unit)
        └─return─> returned ─decide_return(reject)─> dispatched
                      └─decide_return(accept) / redispatch─> cancelled (+ a new order, or the manual queue)

``extension requested`` is a flag on a signed order (``pending_extension_days``),
cleared by grant_extension, deny_extension or reply; ``escalated`` flags an order
the unit called difficult (疑难或重大). ``closed``, ``reopened`` and
``cancelled`` are final.

Who may act: the unit holding an order does sign / return / progress / extend /
reply / escalate on it; the lead unit (牵头单位, 区行政审批局) does dispatch /
redispatch / grant_extension / deny_extension / decide_return on any order.
An appeal may be returned at most :data:`MAX_RETURNS` times; after that the lead
unit's decision is binding.

Events of each accepted action (a refused one has none and changes nothing):

===========================================  =================================================
sign / return / progress / extend            ct.order.signed / returned / progressed /
/ reply / escalate                           extension_requested / replied / escalation_requested
grant_extension / deny_extension             ct.order.extension_granted / extension_denied
decide_return, rejected                      ct.order.return_decided
decide_return, accepted, no unit_code        ct.order.return_decided (+ ct.appeal.queued when
                                             the order was the lead order: the appeal waits)
decide_return, accepted, with unit_code      ct.order.return_decided + ct.order.dispatched
redispatch                                   ct.order.return_decided (accepted) + ct.order.dispatched
dispatch (by hand, from the manual queue)    ct.order.dispatched, one per order (lead + co units)
feedback satisfied / basically_satisfied     ct.appeal.closed
feedback unsatisfied (重办)                  ct.appeal.reopened + ct.order.dispatched
close_unrated (no rating in time)            ct.appeal.closed
start_appeal                                 ct.appeal.closed (consultation answered at once),
                                             or ct.appeal.queued, or ct.order.dispatched per order
===========================================  =================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.contracts import subjects
from shared.contracts.common import AppealKind, Rating
from shared.contracts.events import AppealRegistered, DomainEvent
from shared.contracts.inbound import UnitAction
from shared.district import Category, District, Unit, UnitKind

# --- routing ------------------------------------------------------------------------

KEYWORD_POINTS = 1.0
AREA_POINTS = 2.0
CATEGORY_RULE_POINTS = 1.0
CATEGORY_DEFAULT_POINTS = 2.0
NAMED_POINTS = 2.0
PROPOSED_POINTS = 6.0

FALLBACK_CATEGORY = Category(name="其他", code="other", deadline_days=10, sign_hours=8)
"""Used only when the district defines no category named 其他 (code ``other``)."""

_SEPARATORS = re.compile(r"[、，,；;/\s]+")
_PARENTHESES = re.compile(r"[（(][^）)]*[）)]")
_CO_MARKERS = ("协办", "配合", "协助")
_LEAD_MARKERS = re.compile("牵头|主办")
_ROLE_WORDS = re.compile("牵头|主办|协办|配合|协助|负责")


@dataclass(frozen=True)
class RoutingInput:
    """What routing looks at: the appeal's text and what its sender suggested.

    ``proposed_unit`` is a coffee event's proposal, by name, alias or code; it may
    name several units ("黄水镇牵头，区新科局能源办、供电部门配合"): the one marked
    牵头/主办, else the first not marked 协办/配合, is the proposed lead and the others
    co-handle (see :func:`parse_proposed_units`). ``co_units`` names further
    co-handlers explicitly.
    """

    content: str
    category_hint: str | None = None
    address: str | None = None
    proposed_unit: str | None = None
    proposed_deadline_days: int | None = None
    co_units: tuple[str, ...] = ()

    @classmethod
    def from_registered(cls, event: AppealRegistered) -> RoutingInput:
        """The routing input of a registered appeal (with its coffee-event proposal, if any)."""
        proposal = event.proposal
        return cls(
            content=event.content,
            category_hint=event.category_hint,
            address=event.address,
            proposed_unit=proposal.proposed_unit if proposal else None,
            proposed_deadline_days=proposal.proposed_deadline_days if proposal else None,
        )


@dataclass(frozen=True)
class UnitChoice:
    """One unit's score and why: ``reasons`` like ``matched 左转车道, 违停 → 区公安分局交警大队``."""

    unit_code: str
    unit: str
    score: float
    reasons: tuple[str, ...] = ()
    matched: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """``区公安分局交警大队 (7.0)``."""
        return f"{self.unit} ({self.score:.1f})"


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of routing one appeal.

    ``lead`` is None exactly when ``queued`` (the lead unit dispatches by hand);
    ``reasons`` then say why. ``candidates`` holds every handling unit, best first.
    """

    lead: UnitChoice | None
    co_units: tuple[UnitChoice, ...]
    queued: bool
    reasons: tuple[str, ...]
    category: Category
    deadline_days: int
    sign_hours: float
    candidates: tuple[UnitChoice, ...] = ()

    def top(self, n: int = 3) -> tuple[UnitChoice, ...]:
        """The n best-scoring candidates."""
        return self.candidates[:n]


@dataclass
class _Tally:
    unit: Unit
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)
    content_matched: bool = False

    def add(self, points: float, reason: str) -> None:
        self.score += points
        self.reasons.append(reason)

    def choice(self) -> UnitChoice:
        return UnitChoice(self.unit.unit_code, self.unit.name, round(self.score, 3),
                          tuple(self.reasons), tuple(self.matched))


def _longest(found: list[str]) -> list[str]:
    """Drop every term contained in another found term (左转 inside 左转车道), keeping order."""
    unique = list(dict.fromkeys(found))
    return [t for t in unique if not any(t != other and t in other for other in unique)]


def _found(terms: list[str], text: str) -> list[str]:
    return _longest([t for t in terms if t and t in text])


def handling_units(district: District) -> list[Unit]:
    """Units that can hold work orders: every unit but the supervision office (督查室)."""
    return [u for u in district.units if u.kind != UnitKind.supervision]


def resolve_unit(district: District, text: str) -> Unit | None:
    """A unit from free text: its code, name or alias, or the longest name or alias contained in it.

    Role words and parentheses ("（牵头）", "配合") are ignored.
    """
    cleaned = _ROLE_WORDS.sub("", _PARENTHESES.sub("", text)).strip()
    for candidate in (text.strip(), cleaned):
        if candidate and (unit := district.find_unit(candidate)):
            return unit
    best: tuple[int, Unit] | None = None
    for unit in district.units:
        for label in (unit.name, *unit.aliases):
            if label in cleaned and (best is None or len(label) > best[0]):
                best = (len(label), unit)
    return best[1] if best else None


def parse_proposed_units(district: District, text: str | None) -> tuple[Unit | None, list[Unit], list[str]]:
    """Split an event's proposed unit text into (proposed lead, proposed co-handlers, unknown names).

    Parts are separated by 、，,；; or spaces. The part marked 牵头 / 主办 is the lead;
    without such a mark, the first part not marked 协办 / 配合 / 协助 is. Every other
    known part is a co-handler.
    """
    if not text or not text.strip():
        return None, [], []
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    resolved = [(p, resolve_unit(district, p)) for p in parts]
    unknown = [p for p, unit in resolved if unit is None]
    known = [(p, unit) for p, unit in resolved if unit is not None]
    lead_index = next((i for i, (p, _) in enumerate(known) if _LEAD_MARKERS.search(p)), None)
    if lead_index is None:
        lead_index = next((i for i, (p, _) in enumerate(known) if not any(m in p for m in _CO_MARKERS)), None)
    lead = known[lead_index][1] if lead_index is not None else None
    co: list[Unit] = []
    for _, unit in known:
        if unit != lead and unit not in co:
            co.append(unit)
    return lead, co, unknown


def resolve_category(district: District, hint: str | None, lead_code: str | None = None) -> Category:
    """The category of an appeal: its hint (name, code or alias), else the lead unit's default category, else 其他."""
    if cat := district.category(hint.strip() if hint else None):
        return cat
    if lead_code:
        for cat in district.categories:
            if cat.default_unit == lead_code:
                return cat
    return district.category("other") or district.category("其他") or FALLBACK_CATEGORY


def route(district: District, appeal: RoutingInput) -> RoutingDecision:
    """Choose the lead unit (主办) and co-handling units (协办) of an appeal, or send it to the manual queue.

    Scores every handling unit (see the module docstring for the points), so the
    decision's ``candidates`` explain the choice to the lead unit.
    """
    content = appeal.content or ""
    place_text = content + "\n" + (appeal.address or "")
    hint_cat = district.category(appeal.category_hint.strip() if appeal.category_hint else None)
    hint_labels = {hint_cat.name, hint_cat.code, *hint_cat.aliases} if hint_cat else set()
    tallies = {u.unit_code: _Tally(u) for u in handling_units(district)}

    for rule in district.routing:
        tally = tallies.get(rule.unit)
        if tally is None:
            continue
        name = tally.unit.name
        areas = _found(rule.areas, place_text)
        if rule.areas and not areas:
            continue  # a local rule counts only on its own ground
        if areas:
            tally.add(AREA_POINTS * rule.weight * len(areas), f"area {', '.join(areas)} → {name}")
            tally.areas.extend(a for a in areas if a not in tally.areas)
        keywords = _found(rule.keywords, content)
        if keywords:
            tally.add(KEYWORD_POINTS * rule.weight * len(keywords), f"matched {', '.join(keywords)} → {name}")
            tally.matched.extend(k for k in keywords if k not in tally.matched)
            tally.content_matched = True
        if hint_cat and hint_labels & set(rule.categories):
            tally.add(CATEGORY_RULE_POINTS * rule.weight, f"category {hint_cat.name} → {name}")

    if hint_cat and hint_cat.default_unit in tallies:
        t = tallies[hint_cat.default_unit]
        t.add(CATEGORY_DEFAULT_POINTS, f"category {hint_cat.name} defaults to {t.unit.name}")

    # units named in the text, unless the name was already counted as one of its areas
    named: list[tuple[str, str]] = []
    for code, t in tallies.items():
        for label in (t.unit.name, *t.unit.aliases):
            if len(label) >= 2 and label in content:
                named.append((label, code))
    labels = _longest([label for label, _ in named])
    named_units: set[str] = set()
    for label, code in named:
        t = tallies[code]
        if label not in labels or code in named_units or label in t.areas:
            continue
        named_units.add(code)
        t.add(NAMED_POINTS, f"named in the appeal: {label} → {t.unit.name}")
        t.content_matched = True

    decision_notes: list[str] = []
    proposed_lead, proposed_co, unknown = parse_proposed_units(district, appeal.proposed_unit)
    for name in unknown:
        decision_notes.append(f"proposed unit {name!r} is not a unit of {district.name}")
    if proposed_lead is not None:
        if proposed_lead.unit_code in tallies:
            t = tallies[proposed_lead.unit_code]
            t.add(PROPOSED_POINTS, f"proposed at the coffee event → {t.unit.name}")
        else:
            decision_notes.append(f"proposed unit {proposed_lead.name} cannot handle work orders")

    explicit_co: list[Unit] = list(proposed_co)
    for name in appeal.co_units:
        unit = resolve_unit(district, name)
        if unit is None:
            decision_notes.append(f"co-handling unit {name!r} is not a unit of {district.name}")
        elif unit not in explicit_co:
            explicit_co.append(unit)

    order = {u.unit_code: i for i, u in enumerate(district.units)}
    ranked = sorted(tallies.values(), key=lambda t: (-t.score, order[t.unit.unit_code]))
    candidates = tuple(t.choice() for t in ranked)
    best = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    best_score = best.score if best else 0.0
    margin = best_score - (runner_up.score if runner_up else 0.0)

    queued_because: list[str] = []
    if best is None or best_score < district.min_score:
        what = best.choice().summary if best and best_score > 0 else "none matched"
        queued_because.append(f"no unit scored at least {district.min_score:.1f} (best: {what})")
    elif margin < district.min_margin:
        queued_because.append(
            f"{best.choice().summary} and {runner_up.choice().summary} are too close: "
            f"margin {margin:.1f} < {district.min_margin:.1f}"
        )

    proposed_days = appeal.proposed_deadline_days
    if queued_because:
        category = resolve_category(district, appeal.category_hint)
        tops = [c.summary for c in candidates[:3] if c.score > 0]
        reasons = (*queued_because, *(["candidates: " + ", ".join(tops)] if tops else []), *decision_notes)
        return RoutingDecision(
            lead=None, co_units=(), queued=True, reasons=tuple(reasons), category=category,
            deadline_days=proposed_days or category.deadline_days, sign_hours=category.sign_hours,
            candidates=candidates,
        )

    assert best is not None
    lead = best.choice()
    threshold = max(district.min_score, district.co_share * best_score)
    co: list[UnitChoice] = []
    for unit in explicit_co:
        if unit.unit_code != lead.unit_code and unit.unit_code in tallies:
            t = tallies[unit.unit_code]
            co.append(replace(t.choice(), reasons=(*t.reasons, f"named as co-handler → {unit.name}")))
    for t in ranked[1:]:
        if t.content_matched and t.score >= threshold and all(c.unit_code != t.unit.unit_code for c in co):
            co.append(t.choice())
    category = resolve_category(district, appeal.category_hint, lead.unit_code)
    runner = f"; next {runner_up.choice().summary}" if runner_up else ""
    reasons = (f"lead {lead.summary}{runner}", *lead.reasons, *(f"co-handler {c.summary}" for c in co), *decision_notes)
    return RoutingDecision(
        lead=lead, co_units=tuple(co), queued=False, reasons=tuple(reasons), category=category,
        deadline_days=proposed_days or category.deadline_days, sign_hours=category.sign_hours,
        candidates=candidates,
    )


def known_answer(district: District, content: str, kind: AppealKind | str) -> str | None:
    """The answer a consultation (咨询) gets at once, or None.

    Only a consultation is answered; an entry applies when all its keywords appear
    in the content, and the entry with the most keywords wins (the most specific).
    """
    if str(kind) != AppealKind.consultation.value:
        return None
    best: tuple[int, str] | None = None
    for entry in district.known_answers:
        if all(k in content for k in entry.keywords) and (best is None or len(entry.keywords) > best[0]):
            best = (len(entry.keywords), entry.answer)
    return best[1] if best else None


# --- the work order -----------------------------------------------------------------

MAX_RETURNS = 2
"""Returns (退单) one appeal may have; after that the lead unit's decision is binding."""

UNKNOWN_ORDER = "unknown_order"
NOT_YOUR_ORDER = "not_your_order"
ILLEGAL_TRANSITION = "illegal_transition"
RETURN_LIMIT_REACHED = "return_limit_reached"
INVALID = "invalid"


class OrderStatus(StrEnum):
    """Where a work order stands."""

    dispatched = "dispatched"  # given to the unit, not yet signed for (派单)
    signed = "signed"  # accepted by the unit (签收); may carry an extension request
    returned = "returned"  # the unit says it is the wrong unit (退单); the lead unit decides
    replied = "replied"  # the unit answered; the enterprise is asked to rate it
    closed = "closed"  # finished (办结)
    reopened = "reopened"  # rated unsatisfied; a new order went to the same unit (重办)
    cancelled = "cancelled"  # superseded: return accepted or redispatched


LIVE_STATUSES = frozenset({OrderStatus.dispatched, OrderStatus.signed, OrderStatus.returned})
FINAL_STATUSES = frozenset({OrderStatus.closed, OrderStatus.reopened, OrderStatus.cancelled})


class AppealStatus(StrEnum):
    """Where the appeal stands, as dispatch sees it."""

    queued = "queued"  # waiting in the lead unit's manual queue
    in_progress = "in_progress"  # a lead order exists (live, or replied and awaiting the rating)
    closed = "closed"


class Role(StrEnum):
    """A work order's role in its appeal."""

    lead = "lead"  # 主办
    co = "co"  # 协办


@dataclass(frozen=True)
class WorkOrder:
    """One work order (工单): an appeal given to one unit, lead or co-handling."""

    order_id: str
    appeal_id: str
    unit_code: str
    role: Role = Role.lead
    status: OrderStatus = OrderStatus.dispatched
    reopen_count: int = 0
    dispatched_at: datetime | None = None
    signed_at: datetime | None = None
    replied_at: datetime | None = None
    closed_at: datetime | None = None
    pending_extension_days: int | None = None
    pending_extension_reason: str | None = None
    extension_days_granted: int = 0
    escalated: bool = False
    return_reason: str | None = None
    reply: str | None = None
    resolved: bool | None = None
    replaces_order_id: str | None = None

    @property
    def extension_requested(self) -> bool:
        """An extension (延期) was asked for and the lead unit has not decided yet."""
        return self.pending_extension_days is not None

    @property
    def is_live(self) -> bool:
        """Still with a unit: dispatched, signed or returned."""
        return self.status in LIVE_STATUSES

    @property
    def is_final(self) -> bool:
        """Closed, reopened or cancelled: nothing more happens to it."""
        return self.status in FINAL_STATUSES


WorkOrderState = WorkOrder
"""The name the handler's brief uses for :class:`WorkOrder`."""


@dataclass(frozen=True)
class AppealState:
    """What dispatch keeps about an appeal to act on its orders.

    ``return_count`` counts returns over all its orders; ``orders_issued`` numbers
    new orders (see :func:`order_id_for`); ``unit_codes`` lists every unit that held one.
    """

    appeal_id: str
    received_at: datetime
    category: str = FALLBACK_CATEGORY.name
    deadline_days: int = FALLBACK_CATEGORY.deadline_days
    sign_hours: float = FALLBACK_CATEGORY.sign_hours
    status: AppealStatus = AppealStatus.in_progress
    source_ref: str = ""
    correlation_id: str = ""
    urgent: bool = False
    summary: str = ""
    enterprise_name: str | None = None
    contact_phone: str | None = None
    return_count: int = 0
    orders_issued: int = 0
    unit_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActionPayload:
    """The fields of a unit's, the lead unit's or the enterprise's action (see ``UnitAction``, ``Feedback``)."""

    actor: str = ""
    action_id: str | None = None
    reason: str | None = None
    note: str | None = None
    days: int | None = None
    reply: str | None = None
    resolved: bool | None = None
    unit_code: str | None = None
    co_units: tuple[str, ...] = ()
    accept: bool | None = None
    rating: Rating | str | None = None
    comment: str | None = None
    via: str | None = None
    correlation_id: str | None = None

    @classmethod
    def from_unit_action(cls, action: UnitAction, correlation_id: str | None = None) -> ActionPayload:
        """The payload of an inbound ``ct.in.order.<unit_code>.<action>`` message."""
        return cls(
            actor=action.actor, action_id=action.action_id, reason=action.reason, note=action.note,
            days=action.days, reply=action.reply, resolved=action.resolved, unit_code=action.unit_code,
            co_units=tuple(action.co_units), accept=action.accept, correlation_id=correlation_id,
        )


@dataclass(frozen=True)
class EventSpec:
    """An event to publish: its subject (``shared.contracts.subjects``) and the fields of its model.

    ``fields`` holds everything but ``event_id`` (the outbox assigns it), including
    ``occurred_at``, ``appeal_id``, ``source_ref``, ``correlation_id``, ``actor``
    and, for work-order events, ``order_id``, ``unit_code`` and ``unit``.
    """

    subject: str
    fields: Mapping[str, Any]

    @property
    def model(self) -> type:
        """The event model of ``shared.contracts.events`` for this subject."""
        return subjects.EVENTS[self.subject]

    def build(self, event_id: str = "", **overrides: Any) -> DomainEvent:
        """The validated event model (fields the model does not declare are dropped)."""
        return self.model(**{**self.fields, **overrides, "event_id": event_id})


@dataclass(frozen=True)
class Accepted:
    """An accepted action: the acted-on order after it, orders it created, the appeal after it, its events."""

    new_state: WorkOrder | None
    appeal: AppealState
    events: tuple[EventSpec, ...]
    new_orders: tuple[WorkOrder, ...] = ()
    routing: RoutingDecision | None = None

    @property
    def subjects(self) -> tuple[str, ...]:
        """The subjects of the events, in order."""
        return tuple(e.subject for e in self.events)

    @property
    def closes_appeal(self) -> bool:
        """The appeal was closed: the handler closes its other orders with :func:`close_with_appeal`."""
        return self.appeal.status == AppealStatus.closed


@dataclass(frozen=True)
class Refused:
    """A refused action: it changed nothing and caused no domain event.

    ``reason`` is one of unknown_order, not_your_order, illegal_transition,
    return_limit_reached, invalid; :meth:`rejection` gives the ``ct.order.rejected``
    notice the handler publishes to tell the unit.
    """

    reason: str
    detail: str = ""

    def rejection(
        self, *, action: str, unit_code: str, now: datetime, order_id: str | None = None,
        appeal_id: str | None = None, action_id: str | None = None,
    ) -> EventSpec:
        """The ``ct.order.rejected`` notice for this refusal."""
        return EventSpec(subjects.ORDER_REJECTED, {
            "occurred_at": now, "action_id": action_id, "action": action, "unit_code": unit_code,
            "order_id": order_id, "appeal_id": appeal_id, "reason": self.reason, "detail": self.detail,
        })


Outcome = Accepted | Refused


def order_id_for(appeal_id: str, number: int) -> str:
    """The id of an appeal's n-th work order, deterministic so a redelivered message makes the same order."""
    return f"{appeal_id}-W{number:02d}"


def _unit_name(district: District, code: str) -> str:
    try:
        return district.unit(code).name
    except KeyError:
        return code


def _base(appeal: AppealState, payload: ActionPayload | None, actor: str, now: datetime) -> dict[str, Any]:
    correlation = (payload.correlation_id if payload else None) or appeal.correlation_id
    return {
        "occurred_at": now, "appeal_id": appeal.appeal_id, "source_ref": appeal.source_ref,
        "correlation_id": correlation, "actor": actor,
    }


def _order_event(
    district: District, subject: str, order: WorkOrder, appeal: AppealState, payload: ActionPayload | None,
    actor: str, now: datetime, **fields: Any,
) -> EventSpec:
    base = _base(appeal, payload, actor, now)
    base.update(order_id=order.order_id, unit_code=order.unit_code, unit=_unit_name(district, order.unit_code))
    base.update(fields)
    return EventSpec(subject, base)


def escalation_policy(district: District, appeal: AppealState) -> dict[str, Any]:
    """The escalation policy snapshotted on a dispatched order: clocks and who is told."""
    leader = district.leader_for(appeal.category)
    return {
        "deadline_days": appeal.deadline_days,
        "sign_hours": appeal.sign_hours,
        "district_leader": leader.leader_id if leader else None,
        "lead_unit": district.lead_unit.unit_code,
        "supervision_office": district.supervision_office.unit_code,
    }


def _new_order(
    district: District, appeal: AppealState, unit_code: str, role: Role, now: datetime, actor: str,
    reasons: list[str], payload: ActionPayload | None = None, reopen_count: int = 0,
    replaces: WorkOrder | None = None,
) -> tuple[AppealState, WorkOrder, EventSpec]:
    number = appeal.orders_issued + 1
    order = WorkOrder(
        order_id=order_id_for(appeal.appeal_id, number), appeal_id=appeal.appeal_id, unit_code=unit_code,
        role=role, status=OrderStatus.dispatched, reopen_count=reopen_count, dispatched_at=now,
        replaces_order_id=replaces.order_id if replaces else None,
    )
    units = appeal.unit_codes if unit_code in appeal.unit_codes else (*appeal.unit_codes, unit_code)
    appeal = replace(appeal, orders_issued=number, unit_codes=units)
    event = _order_event(
        district, subjects.ORDER_DISPATCHED, order, appeal, payload, actor, now,
        role=role.value, category=appeal.category, reasons=list(reasons), received_at=appeal.received_at,
        deadline_days=appeal.deadline_days, sign_hours=appeal.sign_hours, urgent=appeal.urgent,
        reopen_count=reopen_count, policy=escalation_policy(district, appeal), summary=appeal.summary,
        enterprise_name=appeal.enterprise_name, replaces_order_id=order.replaces_order_id,
    )
    return appeal, order, event


def _check_order(order: WorkOrder | None, appeal: AppealState) -> Refused | None:
    if order is None:
        return Refused(UNKNOWN_ORDER, "no such work order")
    if order.appeal_id != appeal.appeal_id:
        return Refused(INVALID, f"order {order.order_id} belongs to appeal {order.appeal_id}, not {appeal.appeal_id}")
    return None


def _check_holder(district: District, order: WorkOrder | None, unit_code: str, appeal: AppealState) -> Refused | None:
    if refused := _check_order(order, appeal):
        return refused
    assert order is not None
    if order.unit_code != unit_code:
        return Refused(NOT_YOUR_ORDER, f"order {order.order_id} is held by {_unit_name(district, order.unit_code)}")
    return None


def _check_lead(
    district: District, order: WorkOrder | None, unit_code: str, appeal: AppealState, what: str,
) -> Refused | None:
    if refused := _check_order(order, appeal):
        return refused
    if unit_code != district.lead_unit.unit_code:
        return Refused(NOT_YOUR_ORDER, f"only the lead unit {district.lead_unit.name} may {what}")
    return None


def _illegal(order: WorkOrder, action: str) -> Refused:
    return Refused(ILLEGAL_TRANSITION, f"cannot {action} an order that is {order.status.value}")


def _actor(payload: ActionPayload, unit_code: str) -> str:
    return payload.actor or unit_code


def _target_unit(district: District, code: str | None, field_name: str = "unit_code") -> Unit | Refused:
    if not code:
        return Refused(INVALID, f"{field_name}: required")
    try:
        unit = district.unit(code)
    except KeyError:
        return Refused(INVALID, f"{field_name}: unknown unit {code!r}")
    if unit.kind == UnitKind.supervision:
        return Refused(INVALID, f"{field_name}: {unit.name} does not handle work orders")
    return unit


# --- the holding unit's actions -----------------------------------------------------------


def sign_for(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
             appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit accepts a dispatched order (签收): dispatched → signed; ``ct.order.signed``."""
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if order.status != OrderStatus.dispatched:
        return _illegal(order, "sign for")
    new = replace(order, status=OrderStatus.signed, signed_at=now)
    event = _order_event(district, subjects.ORDER_SIGNED, new, appeal, payload, _actor(payload, unit_code), now)
    return Accepted(new, appeal, (event,))


def return_order(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                 appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit says it is the wrong unit (退单): dispatched → returned; ``ct.order.returned``.

    Only before signing (signing accepts the order). Refused with
    ``return_limit_reached`` once the appeal was returned :data:`MAX_RETURNS` times.
    """
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused(INVALID, "reason: required")
    if order.status != OrderStatus.dispatched:
        return _illegal(order, "return")
    if appeal.return_count >= MAX_RETURNS:
        return Refused(
            RETURN_LIMIT_REACHED,
            f"this appeal was returned {appeal.return_count} times; the lead unit's decision is binding",
        )
    new = replace(order, status=OrderStatus.returned, return_reason=payload.reason)
    appeal = replace(appeal, return_count=appeal.return_count + 1)
    event = _order_event(district, subjects.ORDER_RETURNED, new, appeal, payload, _actor(payload, unit_code), now,
                         reason=payload.reason, return_count=appeal.return_count)
    return Accepted(new, appeal, (event,))


def report_progress(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit reports what it did on a signed order; ``ct.order.progressed``, no state change."""
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.note:
        return Refused(INVALID, "note: required")
    if order.status != OrderStatus.signed:
        return _illegal(order, "report progress on")
    event = _order_event(district, subjects.ORDER_PROGRESSED, order, appeal, payload, _actor(payload, unit_code), now,
                         note=payload.note)
    return Accepted(order, appeal, (event,))


def request_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                      appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit asks for more working days (延期) on a signed order; ``ct.order.extension_requested``.

    One request at a time: a second one before the lead unit decides is illegal.
    """
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.days or payload.days < 1:
        return Refused(INVALID, "days: a positive number of working days is required")
    if not payload.reason:
        return Refused(INVALID, "reason: required")
    if order.status != OrderStatus.signed:
        return _illegal(order, "ask for an extension on")
    if order.extension_requested:
        return Refused(ILLEGAL_TRANSITION, "an extension request is already waiting for the lead unit")
    new = replace(order, pending_extension_days=payload.days, pending_extension_reason=payload.reason)
    event = _order_event(district, subjects.ORDER_EXTENSION_REQUESTED, new, appeal, payload,
                         _actor(payload, unit_code), now, days=payload.days, reason=payload.reason)
    return Accepted(new, appeal, (event,))


def reply_to_appeal(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit answers (答复): signed → replied; ``ct.order.replied``.

    A pending extension request lapses. For the lead order the enterprise is then asked to rate the reply.
    """
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reply or payload.resolved is None:
        return Refused(INVALID, "reply, resolved: required")
    if order.status != OrderStatus.signed:
        return _illegal(order, "reply to")
    new = replace(order, status=OrderStatus.replied, replied_at=now, reply=payload.reply, resolved=payload.resolved,
                  pending_extension_days=None, pending_extension_reason=None)
    event = _order_event(district, subjects.ORDER_REPLIED, new, appeal, payload, _actor(payload, unit_code), now,
                         reply=payload.reply, resolved=payload.resolved, contact_phone=appeal.contact_phone)
    return Accepted(new, appeal, (event,))


def request_escalation(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                       appeal: AppealState, now: datetime) -> Outcome:
    """The holding unit flags a signed order difficult or major (疑难或重大); ``ct.order.escalation_requested``.

    Once per order: escalation then reports it to the district leader.
    """
    if refused := _check_holder(district, order, unit_code, appeal):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused(INVALID, "reason: required")
    if order.status != OrderStatus.signed:
        return _illegal(order, "escalate")
    if order.escalated:
        return Refused(ILLEGAL_TRANSITION, "this order is already flagged difficult")
    new = replace(order, escalated=True)
    event = _order_event(district, subjects.ORDER_ESCALATION_REQUESTED, new, appeal, payload,
                         _actor(payload, unit_code), now, reason=payload.reason)
    return Accepted(new, appeal, (event,))


# --- the lead unit's actions ------------------------------------------------------------------


def grant_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                    appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit grants a pending extension; ``ct.order.extension_granted``.

    Grants ``days`` when given (more or fewer than asked), else the days asked for.
    """
    if refused := _check_lead(district, order, unit_code, appeal, "grant extensions"):
        return refused
    assert order is not None
    if payload.days is not None and payload.days < 1:
        return Refused(INVALID, "days: must be positive")
    if order.status != OrderStatus.signed or not order.extension_requested:
        return Refused(ILLEGAL_TRANSITION, f"no extension request is waiting on order {order.order_id}")
    days = payload.days or order.pending_extension_days or 0
    new = replace(order, pending_extension_days=None, pending_extension_reason=None,
                  extension_days_granted=order.extension_days_granted + days)
    event = _order_event(district, subjects.ORDER_EXTENSION_GRANTED, new, appeal, payload,
                         _actor(payload, unit_code), now, days=days, total_extension_days=new.extension_days_granted)
    return Accepted(new, appeal, (event,))


def deny_extension(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                   appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit denies a pending extension; the deadline stands; ``ct.order.extension_denied``."""
    if refused := _check_lead(district, order, unit_code, appeal, "deny extensions"):
        return refused
    assert order is not None
    if not payload.reason:
        return Refused(INVALID, "reason: required")
    if order.status != OrderStatus.signed or not order.extension_requested:
        return Refused(ILLEGAL_TRANSITION, f"no extension request is waiting on order {order.order_id}")
    new = replace(order, pending_extension_days=None, pending_extension_reason=None)
    event = _order_event(district, subjects.ORDER_EXTENSION_DENIED, new, appeal, payload,
                         _actor(payload, unit_code), now, reason=payload.reason)
    return Accepted(new, appeal, (event,))


def _supersede(
    district: District, order: WorkOrder, appeal: AppealState, payload: ActionPayload, actor: str,
    now: datetime, target: Unit | None, why: str,
) -> tuple[WorkOrder, AppealState, list[EventSpec], tuple[WorkOrder, ...]]:
    """Cancel an order and hand its appeal to ``target`` (a new order, same role) or to the manual queue."""
    cancelled = replace(order, status=OrderStatus.cancelled, closed_at=now,
                        pending_extension_days=None, pending_extension_reason=None)
    if target is None:
        if order.role == Role.lead:
            appeal = replace(appeal, status=AppealStatus.queued)
            queued = EventSpec(subjects.APPEAL_QUEUED, {
                **_base(appeal, payload, actor, now),
                "reasons": [f"{why}: the lead unit dispatches it by hand"], "summary": appeal.summary,
            })
            return cancelled, appeal, [queued], ()
        return cancelled, appeal, [], ()
    appeal, new_order, dispatched = _new_order(
        district, appeal, target.unit_code, order.role, now, actor,
        [f"{why}; redispatched by {district.lead_unit.name} → {target.name}"], payload, replaces=order,
    )
    return cancelled, appeal, [dispatched], (new_order,)


def decide_return(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                  appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit decides a return (退单审核); ``ct.order.return_decided`` first.

    Rejected (``accept`` false): the order goes back to its unit, dispatched, to sign
    for. Accepted: the order is cancelled and, with ``unit_code``, a new order goes to
    that unit (+ ``ct.order.dispatched``); without one a lead order's appeal waits in
    the manual queue (+ ``ct.appeal.queued``).
    """
    if refused := _check_lead(district, order, unit_code, appeal, "decide returns"):
        return refused
    assert order is not None
    if payload.accept is None:
        return Refused(INVALID, "accept: required")
    target: Unit | None = None
    if payload.accept and payload.unit_code:
        found = _target_unit(district, payload.unit_code)
        if isinstance(found, Refused):
            return found
        if found.unit_code == order.unit_code:
            return Refused(INVALID, "unit_code: the order cannot go back to the unit whose return was accepted")
        target = found
    if order.status != OrderStatus.returned:
        return _illegal(order, "decide the return of")
    actor = _actor(payload, unit_code)
    decided = _order_event(district, subjects.ORDER_RETURN_DECIDED, order, appeal, payload, actor, now,
                           accepted=bool(payload.accept))
    if not payload.accept:
        new = replace(order, status=OrderStatus.dispatched, return_reason=None, dispatched_at=now)
        return Accepted(new, appeal, (decided,))
    new, appeal, more, created = _supersede(district, order, appeal, payload, actor, now, target,
                                            f"return by {_unit_name(district, order.unit_code)} accepted")
    return Accepted(new, appeal, (decided, *more), created)


def redispatch(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
               appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit moves a live order to another unit (改派): the order is cancelled, a new one dispatched.

    Events: ``ct.order.return_decided`` with ``accepted`` true for the old order,
    then ``ct.order.dispatched`` for the new one. The contract has no other event
    that ends an order, and the old order ends exactly as after an accepted
    return (its clocks stop, its unit is told), whether or not the unit had returned it.
    """
    if refused := _check_lead(district, order, unit_code, appeal, "redispatch"):
        return refused
    assert order is not None
    found = _target_unit(district, payload.unit_code)
    if isinstance(found, Refused):
        return found
    if found.unit_code == order.unit_code:
        return Refused(INVALID, f"unit_code: order {order.order_id} is already with {found.name}")
    if not order.is_live:
        return _illegal(order, "redispatch")
    actor = _actor(payload, unit_code)
    ended = _order_event(district, subjects.ORDER_RETURN_DECIDED, order, appeal, payload, actor, now, accepted=True)
    why = f"taken from {_unit_name(district, order.unit_code)}"
    new, appeal, more, created = _supersede(district, order, appeal, payload, actor, now, found, why)
    return Accepted(new, appeal, (ended, *more), created)


def dispatch_by_hand(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                     appeal: AppealState, now: datetime) -> Outcome:
    """The lead unit dispatches a queued appeal (人工派单) to ``unit_code`` with optional ``co_units``.

    One ``ct.order.dispatched`` per order created, the lead order first.
    """
    if unit_code != district.lead_unit.unit_code:
        return Refused(NOT_YOUR_ORDER, f"only the lead unit {district.lead_unit.name} may dispatch by hand")
    if order is not None:
        return Refused(ILLEGAL_TRANSITION,
                       "dispatch takes an appeal from the manual queue; use redispatch to move an order")
    target = _target_unit(district, payload.unit_code)
    if isinstance(target, Refused):
        return target
    co: list[Unit] = []
    for code in payload.co_units:
        unit = _target_unit(district, code, "co_units")
        if isinstance(unit, Refused):
            return unit
        if unit.unit_code == target.unit_code or unit in co:
            return Refused(INVALID, f"co_units: {unit.name} is named twice")
        co.append(unit)
    if appeal.status != AppealStatus.queued:
        return Refused(ILLEGAL_TRANSITION, f"the appeal is {appeal.status.value}, not waiting in the manual queue")
    actor = _actor(payload, unit_code)
    why = f"dispatched by hand by {district.lead_unit.name}"
    appeal, lead_order, first = _new_order(district, appeal, target.unit_code, Role.lead, now, actor, [why], payload)
    orders, events = [lead_order], [first]
    for unit in co:
        appeal, co_order, ev = _new_order(district, appeal, unit.unit_code, Role.co, now, actor, [why], payload)
        orders.append(co_order)
        events.append(ev)
    appeal = replace(appeal, status=AppealStatus.in_progress)
    return Accepted(None, appeal, tuple(events), tuple(orders))


# --- the enterprise's rating and closing ------------------------------------------------------


def apply_feedback(district: District, order: WorkOrder | None, unit_code: str, payload: ActionPayload,
                   appeal: AppealState, now: datetime) -> Outcome:
    """The enterprise rates the lead order's reply (回访).

    ``satisfied`` / ``basically_satisfied``: the order and the appeal close
    (``ct.appeal.closed``). ``unsatisfied``: the order is reopened (重办) and a new
    order goes to the same unit with ``reopen_count`` + 1 (``ct.appeal.reopened`` +
    ``ct.order.dispatched``). ``unit_code`` is not used: the rating is the enterprise's.
    """
    if refused := _check_order(order, appeal):
        return refused
    assert order is not None
    try:
        rating = Rating(payload.rating) if payload.rating is not None else None
    except ValueError:
        rating = None
    if rating is None:
        return Refused(INVALID, "rating: satisfied, basically_satisfied or unsatisfied")
    if order.role != Role.lead or order.status != OrderStatus.replied or appeal.status != AppealStatus.in_progress:
        return Refused(ILLEGAL_TRANSITION, "only a replied lead order of an open appeal can be rated")
    actor = payload.actor or payload.via or "enterprise"
    if rating in (Rating.satisfied, Rating.basically_satisfied):
        return _close(order, appeal, payload, actor, now, rating.value)
    reopened = replace(order, status=OrderStatus.reopened, closed_at=now)
    count = order.reopen_count + 1
    appeal, new_order, dispatched = _new_order(
        district, appeal, order.unit_code, Role.lead, now, actor,
        [f"reopened (重办) after an unsatisfied rating of order {order.order_id}"], payload,
        reopen_count=count, replaces=order,
    )
    reopened_event = EventSpec(subjects.APPEAL_REOPENED, {
        **_base(appeal, payload, actor, now), "order_id": new_order.order_id, "unit_code": order.unit_code,
        "unit": _unit_name(district, order.unit_code), "reopen_count": count, "comment": payload.comment,
    })
    return Accepted(reopened, appeal, (reopened_event, dispatched), (new_order,))


def _close(order: WorkOrder, appeal: AppealState, payload: ActionPayload | None, actor: str, now: datetime,
           outcome: str) -> Accepted:
    closed = replace(order, status=OrderStatus.closed, closed_at=now)
    appeal = replace(appeal, status=AppealStatus.closed)
    event = EventSpec(subjects.APPEAL_CLOSED, {
        **_base(appeal, payload, actor, now), "outcome": outcome, "unit_codes": list(appeal.unit_codes),
    })
    return Accepted(closed, appeal, (event,))


def close_unrated(district: District, order: WorkOrder | None, appeal: AppealState, now: datetime) -> Outcome:
    """Close a replied lead order whose enterprise gave no rating in time; ``ct.appeal.closed`` (not_rated)."""
    if refused := _check_order(order, appeal):
        return refused
    assert order is not None
    if order.role != Role.lead or order.status != OrderStatus.replied or appeal.status != AppealStatus.in_progress:
        return Refused(ILLEGAL_TRANSITION, "only a replied lead order of an open appeal closes unrated")
    return _close(order, appeal, None, "system", now, "not_rated")


def close_with_appeal(order: WorkOrder, now: datetime) -> WorkOrder:
    """An appeal's other order once the appeal closed: closed unless already final (no event of its own)."""
    return order if order.is_final else replace(order, status=OrderStatus.closed, closed_at=now,
                                                pending_extension_days=None, pending_extension_reason=None)


# --- starting an appeal ---------------------------------------------------------------------------


def start_appeal(district: District, registered: AppealRegistered, now: datetime) -> Accepted:
    """What dispatch does with a registered appeal.

    A consultation with a known answer closes at once (``ct.appeal.closed``,
    outcome ``answered``); an unclear appeal waits in the manual queue
    (``ct.appeal.queued``); otherwise one ``ct.order.dispatched`` per order, lead first.
    """
    decision = route(district, RoutingInput.from_registered(registered))
    appeal = AppealState(
        appeal_id=registered.appeal_id, received_at=registered.received_at, category=decision.category.name,
        deadline_days=decision.deadline_days, sign_hours=decision.sign_hours, source_ref=registered.source_ref,
        correlation_id=registered.correlation_id, urgent=registered.urgent, summary=summarize(registered.content),
        enterprise_name=registered.enterprise.name, contact_phone=registered.contact.phone,
    )
    base = _base(appeal, None, "system", now)
    if answer := known_answer(district, registered.content, registered.kind):
        appeal = replace(appeal, status=AppealStatus.closed)
        event = EventSpec(subjects.APPEAL_CLOSED, {**base, "outcome": "answered", "answer": answer, "unit_codes": []})
        return Accepted(None, appeal, (event,), routing=decision)
    if decision.queued or decision.lead is None:
        appeal = replace(appeal, status=AppealStatus.queued)
        event = EventSpec(subjects.APPEAL_QUEUED,
                          {**base, "reasons": list(decision.reasons), "summary": appeal.summary})
        return Accepted(None, appeal, (event,), routing=decision)
    appeal, lead_order, first = _new_order(district, appeal, decision.lead.unit_code, Role.lead, now, "system",
                                           list(decision.lead.reasons))
    orders, events = [lead_order], [first]
    for choice in decision.co_units:
        appeal, co_order, ev = _new_order(district, appeal, choice.unit_code, Role.co, now, "system",
                                          list(choice.reasons))
        orders.append(co_order)
        events.append(ev)
    return Accepted(None, appeal, tuple(events), tuple(orders), routing=decision)


def summarize(content: str, limit: int = 60) -> str:
    """The first ``limit`` characters of an appeal, on one line, for notifications."""
    text = " ".join(content.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- one entry point ---------------------------------------------------------------------------------

ACTIONS = {
    "sign": sign_for,
    "return": return_order,
    "progress": report_progress,
    "extend": request_extension,
    "reply": reply_to_appeal,
    "escalate": request_escalation,
    "grant_extension": grant_extension,
    "deny_extension": deny_extension,
    "decide_return": decide_return,
    "redispatch": redispatch,
    "dispatch": dispatch_by_hand,
    "feedback": apply_feedback,
}
"""Action name (the last token of ``ct.in.order.<unit_code>.<action>``, or ``feedback``) → rule."""


def decide(district: District, order: WorkOrder | None, action: str, unit_code: str, payload: ActionPayload,
           appeal: AppealState, now: datetime) -> Outcome:
    """Apply one action by ``unit_code`` to ``order`` (None when the order is unknown, or for ``dispatch``).

    Returns :class:`Accepted` with the new states and the events listed in the
    module docstring, or :class:`Refused` (unknown_order, not_your_order,
    illegal_transition, return_limit_reached, invalid) with nothing changed.
    """
    rule = ACTIONS.get(action)
    if rule is None:
        return Refused(INVALID, f"action: unknown action {action!r}")
    return rule(district, order, unit_code, payload, appeal, now)
