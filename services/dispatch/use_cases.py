"""Dispatch's use cases (its service layer): what the subscribers and the HTTP API both call.

Each takes a unit of work (``DispatchUnitOfWork``, or a fake in tests) and typed
messages, never a delivery or a dict: it reads and writes through
``uow.appeals``, asks the domain (``domain/``) to decide, stages the events the
decision causes with ``uow.publish`` and de-duplicates through the one inbox
(``uow.first``). The caller owns the transaction: one per batch on the NATS
paths, one per request over HTTP.

================================  ==========================================================
start_appeals                     registered appeals → orders, the manual queue, or an answer
RoutingModels                     the routing model in use: retrained when corrections were stored, versioned
act                               one unit action (a command), idempotent on (unit, action id); a correcting
                                  one (dispatch, decide_return, redispatch) also stores a labelled example
rate                              the enterprise's feedback, as the command ``Rate``
refuse_invalid                    an action that does not parse: ``ct.order.rejected`` once
note_deadlines / note_escalations what escalation tells about orders, for the units' lists
follow_masters / reach_followers  likely duplicates (重复诉求): no order, their master's reply, their own rating
split_appeals                     ``ct.appeal.split``: a follower is routed on its own, like a new appeal
close_unrated_appeals             the not-rated sweep: replies nobody rated in time close (followers too)
================================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from services.dispatch import domain
from services.dispatch.domain import Accepted, ActionPayload, Refused, following, rules, text_model
from services.dispatch.domain.following import Follower, follow_master
from services.dispatch.domain.text_model import LabelledExample, TextModel
from services.dispatch.unit_of_work import AppealRepository, FollowerRepository, RoutingRepository
from shared.contracts import (
    AppealClosed,
    AppealEscalated,
    AppealRegistered,
    AppealSplit,
    DeadlineSet,
    Feedback,
    FieldError,
    subjects,
)
from shared.contracts.inbound import Command, Rate
from shared.district import District

log = logging.getLogger("coffeetime.dispatch")

ACTIONS_INBOX = "dispatch-actions"
"""The inbox consumer of actions, keyed ``<unit_code>:<action_id>`` (feedback: ``enterprise:<feedback_id>``)."""
INVALID_INBOX = "dispatch-invalid"
"""The inbox consumer of unparseable actions, keyed by the stored message (one rejection per message)."""

PUBLISHES = (
    subjects.ORDER_DISPATCHED, subjects.ORDER_SIGNED, subjects.ORDER_RETURNED, subjects.ORDER_PROGRESSED,
    subjects.ORDER_EXTENSION_REQUESTED, subjects.ORDER_EXTENSION_GRANTED, subjects.ORDER_EXTENSION_DENIED,
    subjects.ORDER_REPLIED, subjects.ORDER_ESCALATION_REQUESTED, subjects.ORDER_RETURN_DECIDED,
    subjects.ORDER_PAUSED, subjects.ORDER_RESUMED,
    subjects.ORDER_REJECTED, subjects.APPEAL_QUEUED, subjects.APPEAL_CLOSED, subjects.APPEAL_REOPENED,
    subjects.APPEAL_FOLLOWER_REPLIED,
)
"""Every subject dispatch publishes (declared in ``handlers.register``)."""


class DispatchUoW(Protocol):
    """What the use cases need of a unit of work (the real one or a fake)."""

    appeals: AppealRepository
    routing: RoutingRepository
    followers: FollowerRepository

    def publish(self, subject: str, event) -> None: ...
    async def first(self, consumer: str, key: str) -> bool: ...


@dataclass(frozen=True)
class ActionResult:
    """What became of one action: accepted (with the subjects it published) or refused (with the rule it broke)."""

    accepted: bool
    duplicate: bool = False
    reason: str | None = None
    rule: str | None = None
    detail: str = ""
    subjects: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()


# --- registered appeals ----------------------------------------------------------------------


async def start_appeals(uow: DispatchUoW, district: District, registered: Sequence[AppealRegistered],
                        now: datetime, model: TextModel | None = None) -> list[str]:
    """Route each newly registered appeal: orders, the manual queue, or an answer at once.

    ``model`` is the routing model in use (see :class:`RoutingModels`); the batch
    is scored by it in one call. An appeal seen before (a republished event) does
    nothing. Returns the ids of the appeals started now, in the order they came.
    """
    registered = await follow_masters(uow, district, registered, now)
    firsts: dict[str, AppealRegistered] = {}
    for event in registered:
        firsts.setdefault(event.appeal_id, event)  # a batch may hold an appeal twice: the first counts
    unique = list(firsts.values())
    suggestions = model.suggest([e.content for e in unique]) if model else [None] * len(unique)
    started: dict[str, Accepted] = {}
    for event, suggestion in zip(unique, suggestions, strict=True):
        started[event.appeal_id] = domain.start_appeal(district, event, now, suggestion)
    if not started:
        return []
    contents = {e.appeal_id: e.content for e in unique}
    new = await uow.appeals.add_new([(o.appeal, routing_record(o)) for o in started.values()])
    orders, reasons, versions = [], {}, {}
    for appeal_id, outcome in started.items():
        if appeal_id not in new:
            continue
        orders.extend(outcome.new_orders)
        reasons.update(_routing_reasons(outcome))
        if outcome.routing and outcome.routing.model_version:
            versions.update({o.order_id: outcome.routing.model_version for o in outcome.new_orders})
        _stage(uow, outcome)
    await uow.appeals.save(None, orders, reasons)
    await uow.routing.keep_texts([(a, contents[a]) for a in started if a in new])
    await uow.routing.mark_routed(versions)
    return [a for a in started if a in new]


def routing_record(outcome: Accepted) -> dict:
    """What is kept with the appeal about its routing: the lead, co-units, queued, reasons, top candidates.

    ``candidates`` are the ones ``ct.appeal.queued`` carries (the top three, with
    unit name, score, the model's confidence and reasons); ``routing_version``
    the model version that scored them.
    """
    decision = outcome.routing
    if decision is None:
        return {}
    queued = next((e for e in outcome.events if e.subject == subjects.APPEAL_QUEUED), None)
    candidates = (queued.fields.get("candidates") if queued else None) or [
        {"unit_code": c.unit_code, "unit": c.unit, "score": c.score, "confidence": None, "reasons": list(c.reasons)}
        for c in decision.top(3)]
    return {
        "lead": decision.lead.unit_code if decision.lead else None,
        "co_units": [c.unit_code for c in decision.co_units],
        "queued": decision.queued,
        "reasons": list(decision.reasons),
        "candidates": candidates,
        "routing_version": decision.model_version,
    }


# --- the routing model in use ---------------------------------------------------------------------


class RoutingModels:
    """The routing model this replica routes with, refreshed without a restart.

    How replicas agree on the version: the model trained on the configuration's
    examples and the stored corrections with ids up to N is version
    ``<config hash>-<N>`` (:func:`~services.dispatch.domain.text_model.model_version`).
    Corrections are inserted under one advisory lock, so ids become visible in
    order and "up to N" is the same set for everyone. Training is a pure,
    deterministic function of that set: replicas that name the same version hold
    the same model. Each replica, in :meth:`refresh` (called by the background
    task every few seconds, and by the first batch after start-up), reads the
    highest committed example id N; when its model is older it loads the examples
    up to N, trains off the event loop (``asyncio.to_thread``), records the version
    in ``routing_versions`` (the first replica to train it inserts the row) and
    only then routes with it. So every replica uses the newest recorded version it
    has trained, each order names it (``routing_version``), and replicas converge
    on the newest one within one refresh interval.
    """

    def __init__(self, district: District) -> None:
        self.district = district
        self.config_hash = text_model.config_fingerprint(district)
        self.current: TextModel | None = None
        self.last_example_id: int | None = None
        self.training_ms: float | None = None
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        """The version in use (None: no model, the rules decide alone)."""
        return self.current.version if self.current else None

    @property
    def trained(self) -> bool:
        """Whether this replica has looked at the stored examples at least once."""
        return self.last_example_id is not None

    async def refresh(self, start: Callable[[], DispatchUoW]) -> bool:
        """Train and switch to the newest version when new examples were stored; whether it switched."""
        async with self._lock:
            async with start() as uow:
                last = await uow.routing.last_example_id()
            if last == self.last_example_id:
                return False
            async with start() as uow:
                stored = await uow.routing.examples_up_to(last)
            version = text_model.model_version(self.district, last)
            examples = text_model.training_set(self.district, stored)
            started = time.perf_counter()
            model = await asyncio.to_thread(text_model.train, examples, version)
            training_ms = (time.perf_counter() - started) * 1000
            if model is not None:
                async with start() as uow:
                    await uow.routing.record_version(version, self.config_hash, last, len(examples), training_ms)
            self.current, self.last_example_id, self.training_ms = model, last, training_ms
            log.info("routing model trained", extra={"version": version, "examples": len(examples),
                                                      "training_ms": round(training_ms, 1)})
            return True


# --- unit actions and feedback -----------------------------------------------------------------


async def act(uow: DispatchUoW, district: District, unit_code: str, command: Command, now: datetime, *,
              correlation_id: str | None = None) -> ActionResult:
    """``unit_code`` gives ``command``: one action in the caller's transaction, idempotent on (unit, action id).

    A refused action changes nothing and stages ``ct.order.rejected`` naming the
    rule it broke; a repeated action id does nothing at all and reports ``duplicate``.
    """
    if not await uow.first(ACTIONS_INBOX, f"{unit_code}:{command.action_id}"):
        return ActionResult(accepted=True, duplicate=True)
    order_id: str | None = getattr(command, "order_id", None)
    appeal_id: str | None = getattr(command, "appeal_id", None)
    if appeal_id is None and order_id is not None:
        appeal_id = await uow.appeals.appeal_of_order(order_id)
    appeal = await uow.appeals.lock(appeal_id) if appeal_id else None
    if appeal is None:
        outcome: Accepted | Refused = Refused.because(
            rules.OrderMustExist, "no such work order" if order_id else "no such appeal")
    elif isinstance(command, Rate) and appeal.status == domain.AppealStatus.following:
        outcome = await _rate_follower(uow, district, appeal, command, correlation_id, now)
    else:
        if isinstance(command, Rate):
            order = await uow.appeals.rated_order(appeal.appeal_id)
        else:
            order = await uow.appeals.order(order_id) if order_id else None
        outcome = domain.decide(district, order, command.action, unit_code,
                                ActionPayload.of(command, correlation_id), appeal, now)

    if isinstance(outcome, Refused):
        spec = outcome.rejection(action=command.action, unit_code=unit_code, now=now, order_id=order_id,
                                 appeal_id=appeal.appeal_id if appeal else None, action_id=command.action_id)
        uow.publish(spec.subject, spec.build())
        log.info("action refused", extra={"unit_code": unit_code, "action": command.action, "order_id": order_id,
                                          "reason": outcome.reason, "rule": outcome.rule, "detail": outcome.detail})
        return ActionResult(accepted=False, reason=outcome.reason, rule=outcome.rule, detail=outcome.detail)

    changed = [o for o in (outcome.new_state,) if o is not None] + list(outcome.new_orders)
    if outcome.closes_appeal:
        # co-handling orders end with the appeal
        for other in await uow.appeals.orders_of(outcome.appeal.appeal_id):
            if all(other.order_id != o.order_id for o in changed):
                closed = domain.close_with_appeal(other, now)
                if closed != other:
                    changed.append(closed)
    await uow.appeals.save(outcome.appeal, changed, _routing_reasons(outcome))
    await learn_from(uow, unit_code, command, outcome)
    _stage(uow, outcome)
    if subjects.ORDER_REPLIED in outcome.subjects:
        await reach_followers(uow, district, outcome.appeal.appeal_id, now)
    return ActionResult(accepted=True, subjects=outcome.subjects, order_ids=tuple(o.order_id for o in changed))


LEARNING_ACTIONS = ("dispatch", "decide_return", "redispatch")
"""The lead unit's actions that choose a unit for an appeal: each becomes a labelled example of the routing model."""


async def learn_from(uow: DispatchUoW, unit_code: str, command: Command, outcome: Accepted) -> int | None:
    """A correcting action's labelled example (the appeal's content → the unit chosen), stored in the action's
    transaction; its id, or None.

    Only a lead order counts (a co-handler is not the answer to "which unit"), and
    only where a unit was chosen (an accepted return without one teaches nothing).
    Keyed ``<unit_code>:<action_id>`` like the action's inbox, so it is stored once.
    """
    if command.action not in LEARNING_ACTIONS:
        return None
    chosen = next((o for o in outcome.new_orders if o.role == domain.Role.lead), None)
    if chosen is None:
        return None
    content = await uow.routing.text_of(outcome.appeal.appeal_id)
    if not content:
        return None
    example = LabelledExample(content, chosen.unit_code, command.action, appeal_id=outcome.appeal.appeal_id)
    return await uow.routing.add_example(f"{unit_code}:{command.action_id}", example,
                                         actor=getattr(command, "actor", None))


async def rate(uow: DispatchUoW, district: District, feedback: Feedback, now: datetime, *,
               correlation_id: str | None = None) -> ActionResult:
    """``ct.in.feedback``: satisfied closes the appeal, unsatisfied reopens it (重办); idempotent on its id.

    A follow-up call of a drawn appeal (抽查回访, ``via`` follow_up or an ``outcome``)
    is escalation's to count: it changes nothing here and is not refused.
    """
    if feedback.is_follow_up:
        return ActionResult(accepted=True, detail="follow-up call: counted by escalation")
    return await act(uow, district, "enterprise", Rate.from_feedback(feedback), now, correlation_id=correlation_id)


async def refuse_invalid(uow: DispatchUoW, *, unit_code: str, action: str, key: str, errors: Sequence[FieldError],
                         action_id: str | None, order_id: str | None, now: datetime) -> bool:
    """An action that does not even parse: ``ct.order.rejected`` (reason ``invalid``) with its field errors.

    Once per ``key`` (the stored message): a redelivery stages nothing and returns False.
    """
    if not await uow.first(INVALID_INBOX, key):
        return False
    refusal = Refused.because(rules.ActionMustBeWellFormed, "; ".join(f"{e.field}: {e.message}" for e in errors))
    spec = refusal.rejection(action=action, unit_code=unit_code, now=now, order_id=order_id, action_id=action_id)
    uow.publish(spec.subject, spec.build(errors=list(errors)))
    return True


# --- what escalation tells us ---------------------------------------------------------------------


async def note_deadlines(uow: DispatchUoW, events: Sequence[DeadlineSet]) -> None:
    """Clocks' deadlines (``ct.deadline.set``), so lists sort overdue first; a late older one never wins."""
    await uow.appeals.record_deadlines([(e.order_id, e.clock, e.due_at, e.occurred_at) for e in events])


async def note_escalations(uow: DispatchUoW, events: Sequence[AppealEscalated]) -> None:
    """The ladder step each order reached (``ct.appeal.escalated``; an appeal's event names every late order)."""
    await uow.appeals.record_escalations([(o, e.level) for e in events
                                          for o in [x.order_id for x in e.late_orders] or [e.order_id]])


# --- duplicates that follow their master (重复诉求并单) -------------------------------------------


async def follow_masters(uow: DispatchUoW, district: District, registered: Sequence[AppealRegistered],
                         now: datetime) -> list[AppealRegistered]:
    """Keep the likely duplicates of ``registered`` as followers of their masters; the appeals left to route.

    A duplicate (``duplicate_of`` set) gets no order: the master's units are not
    sent a second one. It is kept as following (its registration too, for a later
    split); when its master's lead order is already replied (a master closed
    recently), the reply reaches it at once. A duplicate whose split arrived
    first is routed like any appeal. A republished registration does nothing twice.
    """
    duplicates = {e.appeal_id: e for e in registered if e.duplicate_of}
    if not duplicates:
        return list(registered)
    split = await uow.followers.split_before(list(duplicates))
    following = {a: e for a, e in duplicates.items() if a not in split}
    new = await uow.appeals.add_new([(follow_master(district, e), {"following": e.duplicate_of})
                                     for e in following.values()])
    fresh = [e for a, e in following.items() if a in new]
    await uow.followers.add([Follower(e.appeal_id, e.duplicate_of or "", e.similarity, e) for e in fresh])
    await uow.routing.keep_texts([(e.appeal_id, e.content) for e in fresh])
    for e in fresh:
        await _send_masters_reply(uow, district, e.appeal_id, e.duplicate_of or "", now)
    return [e for e in registered if e.appeal_id not in following]


async def reach_followers(uow: DispatchUoW, district: District, master_appeal_id: str, now: datetime) -> list[str]:
    """The master's lead order was replied: each of its open followers gets ``ct.appeal.follower_replied``."""
    reached = []
    for appeal_id in await uow.followers.of_master(master_appeal_id):
        if await _send_masters_reply(uow, district, appeal_id, master_appeal_id, now):
            reached.append(appeal_id)
    return reached


async def _send_masters_reply(uow: DispatchUoW, district: District, appeal_id: str, master_appeal_id: str,
                              now: datetime) -> bool:
    order = await uow.appeals.rated_order(master_appeal_id)
    if order is None:
        return False
    kept = await uow.followers.lock(appeal_id)
    if kept is None or not kept.follows or kept.replied_order_id == order.order_id:
        return False  # split, or this reply reached it before (a co-handling unit replied after the lead)
    follower = await uow.appeals.lock(appeal_id)
    if follower is None:
        return False
    spec = following.reach_follower(district, follower, master_appeal_id, order, now)
    if spec is None:
        return False
    await uow.followers.mark_replied(appeal_id, order.order_id, now)
    uow.publish(spec.subject, spec.build())
    return True


async def _rate_follower(uow: DispatchUoW, district: District, appeal: domain.AppealState, command: Rate,
                         correlation_id: str | None, now: datetime) -> Accepted | Refused:
    """A follower's rating of the master's reply it was sent: closes it, or makes it its own case (重办)."""
    follower = await uow.followers.lock(appeal.appeal_id)
    order = (await uow.appeals.order(follower.replied_order_id)
             if follower is not None and follower.follows and follower.replied_order_id else None)
    outcome = following.rate_follower(district, appeal, order, ActionPayload.of(command, correlation_id), now)
    if isinstance(outcome, Accepted) and outcome.new_orders and follower is not None:
        await uow.followers.split(appeal.appeal_id, follower.master_appeal_id, now)  # its own case from now on
    return outcome


async def split_appeals(uow: DispatchUoW, district: District, splits: Sequence[AppealSplit], now: datetime,
                        model: TextModel | None = None) -> list[str]:
    """``ct.appeal.split``: each follower is routed on its own, as a new appeal; the ids routed now.

    Idempotent and commutative with the registration: a split seen before does
    nothing; a split of a duplicate whose registration has not arrived yet is
    noted, and the registration then routes it (:func:`follow_masters`); a
    follower already closed or reopened on its own stays as it is.
    """
    routed = []
    for split in {s.appeal_id: s for s in splits}.values():
        if not await uow.followers.split(split.appeal_id, split.master_appeal_id, now):
            continue
        follower = await uow.followers.lock(split.appeal_id)
        appeal = await uow.appeals.lock(split.appeal_id)
        if follower is None or follower.registration is None or appeal is None:
            continue  # its registration routes it when it comes
        if appeal.status != domain.AppealStatus.following:
            continue
        registration = follower.registration.model_copy(update={"duplicate_of": None, "similarity": None})
        suggestion = model.suggest([registration.content])[0] if model else None
        outcome = domain.start_appeal(district, registration, now, suggestion)
        await uow.appeals.save(outcome.appeal, list(outcome.new_orders), _routing_reasons(outcome))
        await uow.followers.keep_routing(split.appeal_id, routing_record(outcome))
        if outcome.routing and outcome.routing.model_version:
            await uow.routing.mark_routed({o.order_id: outcome.routing.model_version for o in outcome.new_orders})
        _stage(uow, outcome)
        routed.append(split.appeal_id)
    return routed


# --- the not-rated sweep --------------------------------------------------------------------------


async def close_unrated_appeals(start: Callable[[], DispatchUoW], district: District, now: datetime,
                                wait: timedelta) -> list[str]:
    """Close, as not rated, appeals whose reply waited longer than ``wait`` for a rating; the ids closed.

    ``start`` opens a unit of work: one to find them, then one per appeal (an
    appeal rated meanwhile is left alone).
    """
    async with start() as uow:
        due = await uow.appeals.awaiting_rating_since(now - wait)
        followers = await uow.followers.awaiting_rating_since(now - wait)
    closed = []
    for appeal_id in followers:  # a follower sent its master's reply closes as not rated on its own
        async with start() as uow:
            appeal = await uow.appeals.lock(appeal_id)
            if appeal is None or appeal.status != domain.AppealStatus.following:
                continue
            closing = replace(appeal, status=domain.AppealStatus.closed)
            await uow.appeals.save(closing, [])
            uow.publish(subjects.APPEAL_CLOSED, AppealClosed(
                occurred_at=now, appeal_id=appeal_id, source_ref=appeal.source_ref,
                correlation_id=appeal.correlation_id, outcome="not_rated", unit_codes=[]))
            closed.append(appeal_id)
    for appeal_id in due:
        async with start() as uow:
            appeal = await uow.appeals.lock(appeal_id)
            if appeal is None:
                continue
            order = await uow.appeals.rated_order(appeal_id)
            outcome = domain.close_unrated(district, order, appeal, now)
            if isinstance(outcome, Accepted):
                await uow.appeals.save(outcome.appeal, [outcome.new_state])
                _stage(uow, outcome)
                closed.append(appeal_id)
    return closed


# --- helpers ----------------------------------------------------------------------------------------


def _stage(uow: DispatchUoW, outcome: Accepted) -> None:
    for spec in outcome.events:
        uow.publish(spec.subject, spec.build())


def _routing_reasons(outcome: Accepted) -> dict[str, list[str]]:
    """Order id → why it was routed there, for the orders the outcome dispatched."""
    return {s.fields["order_id"]: list(s.fields["reasons"])
            for s in outcome.events if s.subject == subjects.ORDER_DISPATCHED}
