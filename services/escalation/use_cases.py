"""Escalation's service layer: the use cases handlers and background tasks call, each on a unit of work.

* :func:`record_clock_events` — a batch of order and appeal events (already parsed
  into their contract models): lock the appeals, drop the events handled before
  (the inbox), then :func:`apply_events`: merge what they tell into each order's
  facts, re-plan the orders touched, bring their stored firings in line and
  stage ``ct.deadline.set`` for the clocks started or moved.
* :func:`fire_due_steps` — the scanner's round: claim the due steps, stage their
  ``ct.deadline.warning`` / ``ct.appeal.escalated``, mark them fired.
* :func:`publish_monthly_list` — the supervision office's list of the month's
  public notices (通报), once per month.

A use case takes a unit of work (``uow.clocks``, ``uow.evaluation``, ``uow.publish``,
``uow.first_time``; see :mod:`services.escalation.unit_of_work`) and typed models,
never a delivery or a dict; the caller opens and commits the unit of work, so a
whole batch is one transaction. The rules are in :mod:`services.escalation.domain`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from services.escalation import domain
from services.escalation.config import Context
from services.escalation.months import month_bounds
from services.escalation.store import Closure, DueStep, Rating
from services.escalation.unit_of_work import CalendarRepository, ClockRepository, EvaluationRepository
from shared.contracts import MonthlyList, subjects
from shared.contracts import events as ev
from shared.unit_of_work import Inbox

log = logging.getLogger("coffeetime.escalation")

#: Inbox consumers (kept as they were, so rows recorded before still de-duplicate).
EVENTS_INBOX = "escalation-events"
MONTHLY_LIST_INBOX = "escalation-monthly-list"

#: The subjects whose events start, move or stop a clock, or that the evaluation counts.
CLOCK_SUBJECTS: tuple[str, ...] = (
    subjects.ORDER_DISPATCHED, subjects.ORDER_SIGNED, subjects.ORDER_RETURNED, subjects.ORDER_RETURN_DECIDED,
    subjects.ORDER_EXTENSION_GRANTED, subjects.ORDER_REPLIED, subjects.ORDER_ESCALATION_REQUESTED,
    subjects.APPEAL_CLOSED, subjects.APPEAL_MERGED, subjects.APPEAL_REOPENED,
    subjects.ORDER_PAUSED, subjects.ORDER_RESUMED,
)
ClockEvent = (ev.OrderDispatched | ev.OrderSigned | ev.OrderReturned | ev.ReturnDecided | ev.ExtensionGranted
              | ev.OrderReplied | ev.EscalationRequested | ev.AppealClosed | ev.AppealMerged | ev.AppealReopened
              | ev.OrderPaused | ev.OrderResumed)

#: The publications of escalation (declared by ``handlers.register``).
PUBLISHES: tuple[str, ...] = (subjects.DEADLINE_SET, subjects.DEADLINE_WARNING, subjects.APPEAL_ESCALATED,
                              subjects.DEADLINE_MONTHLY_LIST, subjects.DEADLINE_MOVED)

PLEASED = frozenset({"satisfied", "basically_satisfied"})


class EscalationWork(Protocol):
    """What the use cases need of a unit of work (the real one or a fake)."""

    clocks: ClockRepository
    evaluation: EvaluationRepository
    calendar: CalendarRepository
    inbox: Inbox

    def publish(self, subject: str, event) -> None: ...
    async def first_time(self, consumer: str, keys) -> set[str]: ...
    async def first(self, consumer: str, key: str) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Received:
    """One received clock event: its subject, its model and its inbox key (the event id)."""

    subject: str
    event: ClockEvent
    key: str


# --- clock events ---------------------------------------------------------------------------


async def record_clock_events(uow: EscalationWork, ctx: Context, received: list[Received], now: datetime) -> int:
    """Handle a batch of clock events once each, whatever their order; returns how many were new.

    The appeals concerned are locked first (their events arrive on several
    consumers at once), then the inbox keeps the events not handled before; a
    key twice in one batch counts once.
    """
    await uow.clocks.lock_appeals([r.event.appeal_id for r in received])
    # after the locks: an order re-planned under a newly loaded year is never planned under the old one again
    await ctx.calendar_sync.refresh(uow.calendar, ctx.calendar)
    fresh_keys = await uow.first_time(EVENTS_INBOX, [r.key for r in received])
    fresh: list[Received] = []
    for r in received:
        if r.key in fresh_keys:
            fresh.append(r)
            fresh_keys.discard(r.key)
    await apply_events(uow, ctx, fresh, now)
    return len(fresh)


async def apply_events(uow: EscalationWork, ctx: Context, received: list[Received], now: datetime,
                       replan: Iterable[str] = ()) -> list[domain.DeadlineMove]:
    """Store what the events tell, re-plan the orders they touch, stage ``ct.deadline.set`` for moved clocks.

    ``replan``: more orders to re-plan with no new event (a revised calendar;
    their appeals locked by the caller). A published deadline the revised
    calendar alone moves (the order's stored facts planned again give another
    one) also stages ``ct.deadline.moved`` for its unit; those moves are returned.
    """
    clocks = uow.clocks
    updates: dict[str, domain.OrderFacts] = {}
    closures: list[Closure] = []
    ratings: list[Rating] = []
    difficult: dict[str, str] = {}
    closed_appeals: set[str] = set()
    for r in received:
        e = r.event
        facts = domain.order_facts_from_event(r.subject, e, ctx.policies, ctx.district)
        if facts is not None:
            known = updates.get(facts.order_id)
            updates[facts.order_id] = domain.merge_facts(known, facts) if known else facts
        if isinstance(e, ev.AppealClosed):
            closures.append(Closure(r.key, e.appeal_id, "closed", e.occurred_at, e.outcome))
            closed_appeals.add(e.appeal_id)
            if e.outcome in PLEASED:
                ratings.extend(Rating(r.key, unit, e.appeal_id, e.outcome, "closed", e.occurred_at)
                               for unit in dict.fromkeys(e.unit_codes))
        elif isinstance(e, ev.AppealMerged):
            closures.append(Closure(r.key, e.appeal_id, "merged", e.occurred_at, None))
            closed_appeals.add(e.appeal_id)
        elif isinstance(e, ev.AppealReopened):
            ratings.append(Rating(r.key, e.unit_code, e.appeal_id, "unsatisfied", "reopened", e.occurred_at))
        elif isinstance(e, ev.EscalationRequested):
            difficult.setdefault(e.order_id, e.reason)
    await clocks.add_closures(closures)
    await clocks.add_ratings(ratings)

    order_ids = set(updates) | set(replan)
    if closed_appeals:
        order_ids |= set(await clocks.orders_of_appeals(closed_appeals))
    if not order_ids:
        return []
    stored = await clocks.load_orders(order_ids)
    appeal_ids = {u.appeal_id for u in updates.values()} | {f.appeal_id for f, _ in stored.values()}
    closures_by_appeal = await clocks.closures_of(appeal_ids)
    states = await clocks.firing_states(order_ids)

    saves, additions, cancellations, requests, moves = [], [], [], [], []
    ladders = domain.Ladders(ctx.calendar)  # no await in this loop: the calendar stays as it is
    for order_id in sorted(order_ids):
        known, published = stored.get(order_id, (None, {}))
        if known is None and order_id not in updates:
            continue  # asked to re-plan an order never stored: nothing to plan
        update = updates.get(order_id)
        facts = domain.merge_facts(known, update) if known and update else known or update
        assert facts is not None
        facts = with_appeal_stops(facts, closures_by_appeal)
        plan = domain.plan_order(facts, ctx.calendar, ladders)
        change = domain.reconcile(plan, states.get(order_id, {}))
        moved = domain.pending_moves(facts, plan, published, ctx.calendar)
        if moved and update is not None and known is not None:
            # an event moved it too (an extension...): told only if the calendar alone moves it as well
            stored_plan = domain.plan_order(with_appeal_stops(known, closures_by_appeal), ctx.calendar, ladders)
            moved = moved if domain.pending_moves(facts, stored_plan, published, ctx.calendar) else []
        elif update is not None:
            moved = []
        for move in moved:
            uow.publish(subjects.DEADLINE_MOVED,
                        domain.deadline_moved_event(move, facts, ctx.calendar_sync.reason(ctx.calendar), now))
        moves.extend(moved)
        published = dict(published)
        for clock_name, due in domain.deadlines_to_publish(plan, published):
            cause = domain.deadline_cause(known, update, clock_name, published)
            uow.publish(subjects.DEADLINE_SET, domain.deadline_set_event(facts, clock_name, due, now, plan, cause))
            published[clock_name] = due
        saves.append((facts, plan, published))
        additions.extend((facts, step) for step in change.add)
        cancellations.extend((order_id, key) for key in change.cancel)
        if order_id in difficult:
            requests.append((facts, plan.handling_due, difficult[order_id]))
    await clocks.save_orders(saves)
    await clocks.add_firings(additions, now)
    await clocks.add_difficult(requests, now)
    await clocks.cancel_firings(cancellations, now)
    if additions or cancellations or requests:
        log.debug("ladders updated", extra={"orders": len(saves), "planned": len(additions),
                                            "cancelled": len(cancellations), "difficult": len(requests)})
    return moves


def with_appeal_stops(facts: domain.OrderFacts, closures_by_appeal) -> domain.OrderFacts:
    """The order's facts with the appeal's closure or merge that ends it (:func:`domain.appeal_stops`)."""
    closed_at, merged_at = domain.appeal_stops(closures_by_appeal.get(facts.appeal_id, ()), facts.dispatched_at)
    if closed_at == facts.closed_at and merged_at == facts.merged_at:
        return facts  # the common case (no closure): the same facts, not a copy
    return dataclasses.replace(facts, closed_at=closed_at, merged_at=merged_at)


# --- the scanner's round ----------------------------------------------------------------------


def _ladder_position(level: str) -> int:
    return domain.LADDER.index(level) if level in domain.LADDER else len(domain.LADDER)


async def fire_due_steps(uow: EscalationWork, ctx: Context, now: datetime, limit: int,
                         replica: str) -> list[DueStep]:
    """Claim up to ``limit`` due steps, stage their events (lowest step first), mark them fired by ``replica``.

    Returns the steps fired. An order's own step (warnings, overdue 督办,
    difficult) makes its own event, its id stable for (order, step). A step
    heard once per appeal (district leader, supervision: :mod:`domain.appeal_steps`)
    makes one event for the appeal and level, naming every late order, the
    first time any order of the appeal reaches it; the steps of the appeal's
    other orders at that level are marked fired with that event, and announce
    nothing again (:func:`_appeal_step_events`).
    """
    claimed = await uow.clocks.claim_due(now, limit)
    if not claimed:
        return []
    stored = await uow.clocks.load_orders({s.order_id for s in claimed})
    known_units = {u.unit_code for u in ctx.district.units}
    ordered = sorted(claimed, key=lambda s: (s.fire_at, _ladder_position(s.level), s.firing_id))
    facts_of = {
        step.firing_id: stored[step.order_id][0] if step.order_id in stored else domain.OrderFacts(
            order_id=step.order_id, appeal_id=step.appeal_id, unit_code=step.unit_code)
        for step in ordered
    }
    appeal_events, announced = await _appeal_step_events(uow, ctx, ordered, facts_of, now, replica)
    fired = []
    for step in ordered:
        facts = facts_of[step.firing_id]
        if facts.unit_code not in known_units:
            log.warning("unit not in the district configuration; the lead unit is told in its place",
                        extra={"unit_code": facts.unit_code, "order_id": facts.order_id})
        appeal_step = domain.appeal_step_of(facts, step.level)
        if appeal_step is not None:
            event = appeal_events[appeal_step]
            if appeal_step in announced:
                uow.publish(subjects.APPEAL_ESCALATED, event)
                announced.discard(appeal_step)  # once, at its lowest place in the round's order
        else:
            targets = domain.targets_for_order(step.level, facts.unit_code, ctx.district, facts.category, step.clock)
            subject, event = domain.step_event(facts, step.level, step.clock, step.due_at, step.step_key, targets,
                                               now, requested_reason=step.requested_reason, fire_at=step.fire_at)
            uow.publish(subject, event)
        fired.append((step.firing_id, event.event_id))
    await uow.clocks.mark_fired(fired, now, replica)
    return claimed


async def _appeal_step_events(
    uow: EscalationWork, ctx: Context, ordered: list[DueStep], facts_of: dict[int, domain.OrderFacts],
    now: datetime, replica: str,
) -> tuple[dict[domain.AppealStep, ev.AppealEscalated], set[domain.AppealStep]]:
    """The event of each appeal step among ``ordered``, and the steps recorded now (to announce).

    Each event names every order of its appeal late at ``now``
    (:func:`domain.late_orders`); a step recorded before, by this or another
    replica, keeps its event id and is not announced again.
    """
    firing: dict[domain.AppealStep, dict[str, datetime]] = {}
    firing_facts: dict[domain.AppealStep, dict[str, domain.OrderFacts]] = {}
    fire_at: dict[domain.AppealStep, datetime] = {}
    for step in ordered:
        facts = facts_of[step.firing_id]
        appeal_step = domain.appeal_step_of(facts, step.level)
        if appeal_step is None:
            continue
        assert step.due_at is not None, "a ladder step has its deadline"
        firing.setdefault(appeal_step, {})[step.order_id] = step.due_at
        firing_facts.setdefault(appeal_step, {})[step.order_id] = facts
        fire_at[appeal_step] = min(fire_at.get(appeal_step, step.fire_at), step.fire_at)
    if not firing:
        return {}, set()
    appeal_ids = {s.appeal_id for s in firing}
    stored = await uow.clocks.load_orders(await uow.clocks.orders_of_appeals(appeal_ids))
    closures = await uow.clocks.closures_of(appeal_ids)
    plans: dict[str, dict[str, tuple[domain.OrderFacts, domain.OrderPlan]]] = {}
    ladders = domain.Ladders(ctx.calendar)
    for stored_facts, _published in stored.values():
        facts = with_appeal_stops(stored_facts, closures)
        plans.setdefault(facts.appeal_id, {})[facts.order_id] = (facts, domain.plan_order(facts, ctx.calendar,
                                                                                          ladders))
    events: dict[domain.AppealStep, ev.AppealEscalated] = {}
    records = []
    for appeal_step in sorted(firing):
        # the orders whose step fires are named even if their facts were never stored (no plan: nothing more)
        orders = {o: (f, domain.OrderPlan()) for o, f in firing_facts[appeal_step].items()}
        orders |= plans.get(appeal_step.appeal_id, {})
        late = domain.late_orders(now, firing[appeal_step], orders.values())
        facts = next(iter(firing_facts[appeal_step].values()))
        targets = domain.targets_for_order(appeal_step.level, late[0].unit_code, ctx.district, facts.category)
        event = domain.appeal_step_event(appeal_step, facts, late, targets, now, fire_at[appeal_step])
        events[appeal_step] = event
        records.append((appeal_step, event.event_id,
                        json.dumps([o.model_dump(mode="json") for o in late], ensure_ascii=False)))
    announced = await uow.clocks.announce_appeal_steps(records, now, replica)
    for appeal_step in sorted(set(events) - announced):
        log.debug("appeal step announced before; this order's step is recorded under it",
                  extra={"appeal_id": appeal_step.appeal_id, "level": appeal_step.level})
    return events, announced


# --- the monthly list --------------------------------------------------------------------------


async def publish_monthly_list(uow: EscalationWork, month: str, now: datetime) -> int:
    """Stage ``month``'s list of publicly noticed orders, once; returns its items, 0 when done before or empty.

    A month without notices is not recorded, so notices fired late in it are
    still listed by a later round.
    """
    start, end = month_bounds(month)
    if await uow.inbox.seen(MONTHLY_LIST_INBOX, month):  # the common case: a read, no write
        return 0
    items = await uow.evaluation.noticed_in(start, end)
    if not items or not await uow.first(MONTHLY_LIST_INBOX, month):
        return 0
    uow.publish(subjects.DEADLINE_MONTHLY_LIST, MonthlyList(
        event_id=domain.stable_event_id("monthly_list", month), occurred_at=now, month=month, items=items))
    return len(items)
