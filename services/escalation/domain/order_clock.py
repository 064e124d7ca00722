"""One order's clocks: its facts, its deadlines, its ladder, and the stored firings brought in line.

Its events may arrive in any order and more than once, so what they tell
(:class:`OrderFacts`, :func:`order_facts_from_event`) is merged commutatively
(:func:`merge_facts`), the ladder is a function of the merged facts alone
(:func:`plan_order`), and the stored firings are brought in line with it
(:func:`reconcile`). A clock stopped at time S keeps the steps due before S
(they applied) and drops the rest. The deadlines: sign-for
(:func:`sign_for_due_at`) and handling (:func:`handling_due_at`), both moved by the
pauses (待补充材料, :mod:`.pauses`), and a re-dispatched order's own clock (``unit``,
from its sign-for: :func:`unit_due_at`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.escalation.domain.clock_changes import clock_change
from services.escalation.domain.ladder import DIFFICULT_KEY, LADDER, Clock, Firing, Ladders, plan_firings
from services.escalation.domain.pauses import (
    CountedPause,
    counted_pauses,
    due_as_of,
    merge_pauses,
    open_pause,
    paused_seconds,
    shift,
)
from services.escalation.domain.policy import EscalationPolicy, PolicyTable, resolve_policy
from shared.contracts.events import ClockPause, DeadlineCause, DeadlineClock
from shared.district import District
from shared.workcalendar import WorkCalendar

# --- deadlines ----------------------------------------------------------------------


def handling_due_at(received_at: datetime, deadline_days: int, cal: WorkCalendar, extension_days: int = 0) -> datetime:
    """The handling deadline: ``deadline_days`` plus all granted extension days, counted from receipt.

    Pass the *total* of granted extension days (``ExtensionGranted.total_extension_days``),
    so a redelivered grant cannot move the deadline twice.
    """
    return cal.add_working_days(received_at, deadline_days + extension_days)


def sign_for_due_at(dispatched_at: datetime, sign_hours: float, cal: WorkCalendar) -> datetime:
    """The sign-for deadline: ``sign_hours`` working hours after dispatch."""
    return cal.add_working_hours(dispatched_at, sign_hours)


def unit_due_at(signed_at: datetime, deadline_days: int, cal: WorkCalendar, extension_days: int = 0) -> datetime:
    """A re-dispatched order's own deadline (the unit's clock): the working days counted from its sign-for."""
    return cal.add_working_days(signed_at, deadline_days + extension_days)


#: The clocks a deadline is published for (``ct.deadline.set``): the two of the ladder and the unit's own.
DEADLINE_CLOCKS: tuple[DeadlineClock, ...] = ("sign_for", "handling", "unit")


# --- one order's clocks, whatever order its events arrived in -------------------------
#
# Escalation keeps, per work order, the facts its events told (``OrderFacts``).
# Events of one order may arrive in any order and more than once, so facts are
# merged commutatively (:func:`merge_facts`): the earliest time of each stop,
# the largest extension and reopening count, the dispatch details from whichever
# event carried them. The order's ladder is then a function of its facts alone
# (:func:`plan_order`), and the stored firings are brought in line with it
# (:func:`reconcile`): the same facts give the same plan, whichever event came last.

#: Fact fields that record when something happened: the earliest report wins.
_EARLIEST_FIELDS = frozenset({
    "signed_at", "returned_at", "return_accepted_at", "replied_at", "reopened_at", "difficult_at",
    "closed_at", "merged_at",
})
#: Fact fields that only grow: the largest report wins.
_LARGEST_FIELDS = frozenset({"reopen_count", "extension_days"})

#: Which fact stops which clocks: the event names :func:`clock_change` knows.
_STOP_FACTS: tuple[tuple[str, str], ...] = (
    ("signed_at", "order.signed"),
    ("returned_at", "order.returned"),
    ("return_accepted_at", "order.return_decided.accepted"),
    ("replied_at", "order.replied"),
    ("closed_at", "appeal.closed"),
    ("merged_at", "appeal.merged"),
)


@dataclass(frozen=True)
class OrderFacts:
    """What escalation knows of one work order; ``None`` where no event told it yet.

    The dispatch details (``received_at`` ... ``policy``) come from
    ``ct.order.dispatched``; without them no clock can be planned. ``policy``
    is the resolved :class:`EscalationPolicy` snapshot (:func:`resolve_policy`).
    ``closed_at`` / ``merged_at`` are the appeal's closure or merge that ends
    this order (:func:`appeal_stops`); the other times are the order's own.
    """

    order_id: str
    appeal_id: str
    unit_code: str
    unit: str = ""
    role: str | None = None
    category: str | None = None
    urgent: bool = False
    summary: str = ""
    source_ref: str = ""
    correlation_id: str = ""
    received_at: datetime | None = None
    dispatched_at: datetime | None = None
    deadline_days: int | None = None
    sign_hours: float | None = None
    policy: dict[str, Any] | None = None
    reopen_count: int = 0
    extension_days: int = 0
    signed_at: datetime | None = None
    returned_at: datetime | None = None
    return_accepted_at: datetime | None = None
    replied_at: datetime | None = None
    reopened_at: datetime | None = None
    difficult_at: datetime | None = None
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    replaces_order_id: str | None = None
    pauses: tuple[ClockPause, ...] = ()

    @property
    def has_unit_clock(self) -> bool:
        """A re-dispatched order (not a reopening): its unit's own clock starts at its sign-for."""
        return self.replaces_order_id is not None and self.reopen_count == 0

    @property
    def dispatched(self) -> bool:
        """Whether ``ct.order.dispatched`` arrived: the clocks can be planned."""
        return None not in (self.received_at, self.dispatched_at, self.deadline_days, self.sign_hours)

    @property
    def handling_started_at(self) -> datetime | None:
        """Where the handling clock counts from: the receipt, or the reopening for a reopened order (重办)."""
        return self.dispatched_at if self.reopen_count > 0 else self.received_at

    def stopped_at(self, clock: Clock) -> datetime | None:
        """When ``clock`` stopped: the earliest fact that stops it (:func:`clock_change`); ``None`` while it runs."""
        times = [
            at for name, event in _STOP_FACTS
            if (at := getattr(self, name)) is not None and clock in clock_change(event).stops
        ]
        return min(times, default=None)

    @property
    def is_open(self) -> bool:
        """Dispatched and its handling clock still running."""
        return self.dispatched and self.stopped_at("handling") is None


def merge_facts(a: OrderFacts, b: OrderFacts) -> OrderFacts:
    """The facts of ``a`` and ``b`` together; commutative and idempotent.

    Times of events take the earliest report, counts the largest, ``urgent``
    either; any other field keeps the value known (the dispatch details come
    from one event only, and every event of an order carries the same ids).
    """
    if a.order_id != b.order_id:
        raise ValueError(f"cannot merge the facts of orders {a.order_id!r} and {b.order_id!r}")
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(OrderFacts):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name in _EARLIEST_FIELDS:
            merged[f.name] = min((t for t in (x, y) if t is not None), default=None)
        elif f.name in _LARGEST_FIELDS:
            merged[f.name] = max(x, y)
        elif f.name == "urgent":
            merged[f.name] = x or y
        elif f.name == "pauses":
            merged[f.name] = merge_pauses(x, y)
        else:
            merged[f.name] = x if x not in (None, "") else y
    return OrderFacts(**merged)


def order_facts_from_event(
    subject: str,
    event: Any,
    policies: PolicyTable,
    district: District | None = None,
) -> OrderFacts | None:
    """The facts one event tells about its work order; ``None`` for an event about no single order.

    ``event`` is the parsed model of ``subject`` (``shared.contracts.events``).
    ``ct.appeal.closed`` / ``ct.appeal.merged`` concern the appeal: see :func:`appeal_stops`.
    """
    name = subject.removeprefix("ct.")
    ids = {"order_id": getattr(event, "order_id", None), "appeal_id": event.appeal_id,
           "unit_code": getattr(event, "unit_code", None)}
    if not ids["order_id"] or not ids["unit_code"]:
        return None
    at = event.occurred_at
    common = {**ids, "unit": getattr(event, "unit", "") or ""}
    if name == "order.dispatched":
        policy = resolve_policy(policies, event.category, event.urgent, district)
        return OrderFacts(
            **common, role=event.role, category=event.category, urgent=event.urgent, summary=event.summary,
            source_ref=event.source_ref, correlation_id=event.correlation_id, received_at=event.received_at,
            dispatched_at=at, deadline_days=event.deadline_days, sign_hours=event.sign_hours,
            policy=policy.to_dict(), reopen_count=event.reopen_count,
            replaces_order_id=event.replaces_order_id, pauses=tuple(event.pauses),
        )
    if name in ("order.paused", "order.resumed"):
        return OrderFacts(**common, pauses=(event.pause,))
    if name == "order.signed":
        return OrderFacts(**common, signed_at=at)
    if name == "order.returned":
        return OrderFacts(**common, returned_at=at)
    if name == "order.return_decided":
        return OrderFacts(**common, return_accepted_at=at if event.accepted else None)
    if name == "order.extension_granted":
        return OrderFacts(**common, extension_days=event.total_extension_days)
    if name == "order.replied":
        return OrderFacts(**common, replied_at=at)
    if name == "order.escalation_requested":
        return OrderFacts(**common, difficult_at=at)
    if name == "appeal.reopened":
        return OrderFacts(**common, reopen_count=event.reopen_count, reopened_at=at)
    return OrderFacts(**common)


ClosureKind = Literal["closed", "merged"]


def appeal_stops(
    closures: Iterable[tuple[datetime, ClosureKind]],
    dispatched_at: datetime | None,
) -> tuple[datetime | None, datetime | None]:
    """``(closed_at, merged_at)`` for an order of an appeal with these closures.

    A closure ends the orders dispatched before it (an appeal closed, later
    reopened and re-dispatched, is not closed for the new order); while the
    order's dispatch is unknown, any closure counts.
    """
    earliest: dict[str, datetime] = {}
    for at, kind in closures:
        if dispatched_at is not None and at < dispatched_at:
            continue
        if kind not in earliest or at < earliest[kind]:
            earliest[kind] = at
    return earliest.get("closed"), earliest.get("merged")


@dataclass(frozen=True)
class OrderPlan:
    """An order's clocks as its facts make them.

    ``steps``: every ladder step that applies, in firing order: the whole
    ladder of a running clock, and, of a stopped one, the steps whose time
    had come before it stopped (they applied; if not fired yet they still fire).
    """

    sign_due: datetime | None = None
    handling_due: datetime | None = None
    running: frozenset[Clock] = frozenset()
    steps: tuple[Firing, ...] = ()
    unit_due: datetime | None = None
    pauses: tuple[CountedPause, ...] = ()

    def due(self, clock: DeadlineClock) -> datetime | None:
        """The deadline of ``clock``; ``None`` until the order was dispatched (``unit``: until signed)."""
        return {"sign_for": self.sign_due, "handling": self.handling_due, "unit": self.unit_due}[clock]

    def runs(self, clock: DeadlineClock) -> bool:
        """Whether ``clock`` runs (``unit`` runs beside the handling clock, once it has a deadline)."""
        if clock == "unit":
            return self.unit_due is not None and "handling" in self.running
        return clock in self.running

    @property
    def paused(self) -> CountedPause | None:
        """The handling clock's pause in progress, if any."""
        return open_pause(self.pauses)

    @property
    def paused_seconds(self) -> int:
        """Working seconds the handling clock was paused (ended pauses)."""
        return paused_seconds(self.pauses)


def plan_order(facts: OrderFacts, cal: WorkCalendar, ladders: Ladders | None = None) -> OrderPlan:
    """The deadlines and the ladder of an order; empty until it was dispatched.

    sign-for: ``sign_hours`` working hours from dispatch. handling:
    ``deadline_days`` plus the extension days granted, in working days from
    receipt, or from the reopening for a reopened order (``reopen_count`` > 0),
    moved by the working time of its pauses (:mod:`.pauses`): each handling step
    moves past the pauses that started before it, and keeps the deadline it had
    when its time came (its key). unit (a re-dispatched order only): the same
    working days from its sign-for, moved by the order's own pauses; no step.

    ``ladders``: the handling ladders a batch planned before on ``cal`` (:class:`Ladders`), reused.
    """
    if not facts.dispatched:
        return OrderPlan()
    assert facts.dispatched_at and facts.sign_hours is not None and facts.deadline_days is not None
    start = facts.handling_started_at
    assert start is not None
    policy = EscalationPolicy.from_dict(facts.policy)
    sign_due = sign_for_due_at(facts.dispatched_at, facts.sign_hours, cal)
    unpaused_due = handling_due_at(start, facts.deadline_days, cal, facts.extension_days)
    handling_stop = facts.stopped_at("handling")
    pauses = tuple(counted_pauses(facts.pauses, start, unpaused_due, handling_stop, cal))
    handling_due = shift(unpaused_due, pauses, cal)
    unit_due = None
    if facts.has_unit_clock and facts.signed_at is not None:
        own = counted_pauses(facts.pauses, facts.signed_at, unit_due_at(facts.signed_at, facts.deadline_days, cal,
                             facts.extension_days), handling_stop, cal, order_id=facts.order_id)
        unit_due = shift(unit_due_at(facts.signed_at, facts.deadline_days, cal, facts.extension_days), own, cal)
    running: set[Clock] = set()
    steps: list[Firing] = []
    for clock, started, due in (("sign_for", facts.dispatched_at, sign_due), ("handling", start, unpaused_due)):
        ladder = plan_firings(clock, started, due, policy, cal, ladders)
        if clock == "handling" and pauses:
            ladder = [_moved_by_pauses(f, pauses, cal) for f in ladder]
        # a warning planned before the order existed is moot: a backlog order starts at "overdue"
        ladder = [f for f in ladder if not (f.is_warning and f.fire_at < facts.dispatched_at)]
        stopped = facts.stopped_at(clock)
        if stopped is None:
            running.add(clock)
            steps.extend(ladder)
        else:
            steps.extend(f for f in ladder if f.fire_at <= stopped)
    steps.sort(key=lambda f: (f.fire_at, LADDER.index(f.level)))
    return OrderPlan(sign_due, handling_due, frozenset(running), tuple(steps), unit_due, pauses)


def _moved_by_pauses(firing: Firing, pauses: tuple[CountedPause, ...], cal: WorkCalendar) -> Firing:
    """A step of the un-paused ladder, moved past the pauses, with the deadline it has when its time comes."""
    fire_at = shift(firing.fire_at, pauses, cal)
    return Firing(firing.level, fire_at, firing.clock, due_as_of(firing.due_at, fire_at, pauses, cal))


StepState = Literal["pending", "fired", "cancelled"]


@dataclass(frozen=True)
class Reconciliation:
    """What to change in an order's stored firings: the steps to add and the pending keys to cancel."""

    add: tuple[Firing, ...] = ()
    cancel: tuple[str, ...] = ()


def reconcile(plan: OrderPlan, stored: Mapping[str, StepState]) -> Reconciliation:
    """Bring the stored firings (``step_key`` → state) in line with ``plan``.

    Steps of the plan not stored yet are added; pending steps the plan no
    longer has (the clock stopped before them, or the deadline moved) are
    cancelled. Fired and cancelled steps stay as they are; the ``difficult``
    step is the unit's request and no clock cancels it.
    """
    wanted = {f.key: f for f in plan.steps}
    add = tuple(f for key, f in wanted.items() if key not in stored)
    cancel = tuple(sorted(
        key for key, state in stored.items() if state == "pending" and key not in wanted and key != DIFFICULT_KEY
    ))
    return Reconciliation(add, cancel)


def deadlines_to_publish(plan: OrderPlan, published: Mapping[str, datetime | None]
                         ) -> list[tuple[DeadlineClock, datetime]]:
    """The running clocks whose deadline was not published yet, or moved since (``ct.deadline.set``)."""
    out: list[tuple[DeadlineClock, datetime]] = []
    for clock in DEADLINE_CLOCKS:
        due = plan.due(clock)
        if plan.runs(clock) and due is not None and published.get(clock) != due:
            out.append((clock, due))
    return out


def deadline_cause(known: OrderFacts | None, update: OrderFacts | None, clock: DeadlineClock,
                   published: Mapping[str, datetime | None]) -> DeadlineCause:
    """Why a clock's deadline is (re)published: what the new event told compared with the stored facts."""
    if update is None:
        return "calendar_revised" if known is not None else "replanned"
    if known is None or published.get(clock) is None:
        return "reopened" if update.reopen_count and clock == "handling" else "started"
    if update.reopen_count > known.reopen_count:
        return "reopened"
    before = {p.pause_id: p for p in known.pauses}
    for p in update.pauses:
        was = before.get(p.pause_id)
        if p.ended_at is not None and (was is None or was.ended_at is None):
            return "resumed"
        if p.ended_at is None and was is None:
            return "paused"
    if update.extension_days > known.extension_days:
        return "extension"
    return "replanned"
