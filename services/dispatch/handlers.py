"""Dispatch's subscribers: registered appeals become work orders; units act on them; enterprises rate.

Every path runs through :func:`act` (one action, one transaction, idempotent on
its id), which the HTTP API shares, so NATS and HTTP have the same semantics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.dispatch import domain, store
from services.dispatch.domain import Accepted, ActionPayload, Refused
from shared import clock, outbox
from shared.bus import Delivery
from shared.contracts import AppealRegistered, Feedback, FieldError, UnitAction, subjects
from shared.contracts.common import field_errors
from shared.district import District
from shared.service import Service

log = logging.getLogger("coffeetime.dispatch")
SERVICE = "dispatch"


@dataclass
class ActionResult:
    """What became of one action: accepted (with the subjects it published) or refused (with why)."""

    accepted: bool
    duplicate: bool = False
    reason: str | None = None
    detail: str = ""
    subjects: tuple[str, ...] = ()
    order_ids: tuple[str, ...] = ()
    errors: tuple[FieldError, ...] = ()


def register(service: Service, district: District) -> None:
    service.consumers.subscribe(subjects.APPEAL_REGISTERED, registration_handler(service, district))
    service.consumers.subscribe(subjects.IN_ORDER_ALL, unit_action_handler(service, district), invalid="reject")
    service.consumers.subscribe(subjects.IN_FEEDBACK, feedback_handler(service, district), invalid="reject")
    service.consumers.subscribe(subjects.DEADLINE_SET, order_note_handler(service, note_deadlines))
    service.consumers.subscribe(subjects.APPEAL_ESCALATED, order_note_handler(service, note_escalations))
    service.background.append(close_unrated_appeals(district))


# --- registered appeals ----------------------------------------------------------------------


def registration_handler(service: Service, district: District):
    """Routes each newly registered appeal: orders, the manual queue, or an answer at once."""

    async def handle(batch: list[Delivery]) -> None:
        now = clock.now()
        started: dict[str, tuple[Accepted, dict]] = {}
        for d in batch:
            registered = d.parse(AppealRegistered)
            if registered is None:
                log.error("unreadable ct.appeal.registered skipped", extra={"msg_id": d.msg_id})
                continue
            outcome = domain.start_appeal(district, registered, now)
            started.setdefault(registered.appeal_id, (outcome, _routing_record(outcome)))
        if not started:
            return
        async with service.pool.acquire() as conn, conn.transaction():
            new = await store.insert_new_appeals(conn, [(o.appeal, r) for o, r in started.values()])
            orders, reasons, events = [], {}, []
            for appeal_id in new:
                outcome, _ = started[appeal_id]
                orders.extend(outcome.new_orders)
                for spec in outcome.events:
                    events.append((spec.subject, spec.build()))
                    if spec.subject == subjects.ORDER_DISPATCHED:
                        reasons[spec.fields["order_id"]] = list(spec.fields["reasons"])
            await store.save_orders(conn, orders, reasons)
            await outbox.put_many(conn, SERVICE, events)

    return handle


def _routing_record(outcome: Accepted) -> dict:
    decision = outcome.routing
    if decision is None:
        return {}
    return {
        "lead": decision.lead.unit_code if decision.lead else None,
        "co_units": [c.unit_code for c in decision.co_units],
        "queued": decision.queued,
        "reasons": list(decision.reasons),
        "candidates": [{"unit_code": c.unit_code, "score": c.score, "reasons": list(c.reasons)}
                       for c in decision.top(5)],
    }


# --- unit actions and feedback -----------------------------------------------------------------


async def act(service: Service, district: District, conn: asyncpg.Connection, *, unit_code: str, action: str,
              action_id: str, payload: ActionPayload, order_id: str | None = None,
              appeal_id: str | None = None) -> ActionResult:
    """Apply one action inside the caller's transaction; idempotent on (unit, action id).

    A refused action changes nothing and publishes ``ct.order.rejected``; a repeated
    action id does nothing at all and reports ``duplicate``.
    """
    now = clock.now()
    if not await store.first_time(conn, f"{SERVICE}-actions", f"{unit_code}:{action_id}"):
        return ActionResult(accepted=True, duplicate=True)
    if appeal_id is None and order_id is not None:
        appeal_id = await store.appeal_of_order(conn, order_id)
    appeal = await store.lock_appeal(conn, appeal_id) if appeal_id else None
    if appeal is None:
        outcome: Accepted | Refused = Refused(domain.UNKNOWN_ORDER, "no such work order" if order_id else "no such appeal")
        order = None
    else:
        if action == "feedback":
            order = await store.rated_order(conn, appeal.appeal_id)
        else:
            order = await store.load_order(conn, order_id) if order_id else None
        outcome = domain.decide(district, order, action, unit_code, payload, appeal, now)

    if isinstance(outcome, Refused):
        spec = outcome.rejection(action=action, unit_code=unit_code, now=now, order_id=order_id,
                                 appeal_id=appeal.appeal_id if appeal else None, action_id=action_id)
        await outbox.put(conn, SERVICE, spec.subject, spec.build())
        log.info("action refused", extra={"unit_code": unit_code, "action": action, "order_id": order_id,
                                          "reason": outcome.reason, "detail": outcome.detail})
        return ActionResult(accepted=False, reason=outcome.reason, detail=outcome.detail)

    changed = [o for o in (outcome.new_state,) if o is not None] + list(outcome.new_orders)
    if outcome.closes_appeal:
        # co-handling orders end with the appeal
        for other in await store.orders_of(conn, outcome.appeal.appeal_id):
            if all(other.order_id != o.order_id for o in changed):
                closed = domain.close_with_appeal(other, now)
                if closed != other:
                    changed.append(closed)
    reasons = {s.fields["order_id"]: list(s.fields["reasons"])
               for s in outcome.events if s.subject == subjects.ORDER_DISPATCHED}
    await store.save_appeal(conn, outcome.appeal)
    await store.save_orders(conn, changed, reasons)
    await outbox.put_many(conn, SERVICE, [(s.subject, s.build()) for s in outcome.events])
    return ActionResult(accepted=True, subjects=outcome.subjects, order_ids=tuple(o.order_id for o in changed))


async def refuse_invalid(conn: asyncpg.Connection, *, unit_code: str, action: str, d: Delivery | None,
                         errors: list[FieldError], action_id: str | None, order_id: str | None) -> None:
    """An action that does not even parse: ``ct.order.rejected`` with field errors, once per message."""
    key = f"{d.subject}#{d.stream_seq}" if d else f"{unit_code}:{action_id}"
    if not await store.first_time(conn, f"{SERVICE}-invalid", key):
        return
    spec = Refused(domain.INVALID, "; ".join(f"{e.field}: {e.message}" for e in errors)).rejection(
        action=action, unit_code=unit_code, now=clock.now(), order_id=order_id, action_id=action_id)
    await outbox.put(conn, SERVICE, spec.subject, spec.build(errors=errors))


def parse_action(action: str, body: bytes | dict) -> tuple[UnitAction | None, list[FieldError]]:
    """A unit action, checked for the fields its action needs."""
    try:
        parsed = (UnitAction.model_validate_json(body) if isinstance(body, bytes | bytearray)
                  else UnitAction.model_validate(body))
    except ValueError as exc:
        errors = field_errors(exc) if hasattr(exc, "errors") else [FieldError(field="body", message=str(exc))]
        if any(e.message.startswith("Invalid JSON") for e in errors):
            errors = [FieldError(field="body", message="not a JSON object")]
        return None, errors
    if action not in domain.ACTIONS or action == "feedback":
        return None, [FieldError(field="action", message=f"unknown action {action!r}")]
    missing = parsed.missing_for(action)
    if missing:
        return None, [FieldError(field=f, message="required for this action") for f in missing]
    return parsed, []


def unit_action_handler(service: Service, district: District):
    """``ct.in.order.<unit_code>.<action>``: the unit is the one in the subject (its NATS user may use only its own)."""

    async def handle(batch: list[Delivery]) -> None:
        async with service.pool.acquire() as conn, conn.transaction():
            for d in batch:
                _, _, _, unit_code, action = d.subject.split(".", 4)
                parsed, errors = parse_action(action, d.data)
                if parsed is None:
                    await refuse_invalid(conn, unit_code=unit_code, action=action, d=d, errors=errors,
                                         action_id=d.readable_field("action_id"),
                                         order_id=d.readable_field("order_id"))
                    continue
                await act(service, district, conn, unit_code=unit_code, action=action, action_id=parsed.action_id,
                          payload=ActionPayload.from_unit_action(parsed, d.msg_id), order_id=parsed.order_id,
                          appeal_id=parsed.appeal_id)

    return handle


def feedback_handler(service: Service, district: District):
    """``ct.in.feedback``: satisfied closes the appeal, unsatisfied reopens it (重办)."""

    async def handle(batch: list[Delivery]) -> None:
        async with service.pool.acquire() as conn, conn.transaction():
            for d in batch:
                feedback = d.parse(Feedback)
                if feedback is None:
                    await refuse_invalid(conn, unit_code="enterprise", action="feedback", d=d, errors=d.errors,
                                         action_id=d.readable_field("feedback_id"), order_id=None)
                    continue
                payload = ActionPayload(actor=feedback.via or "enterprise", action_id=feedback.feedback_id,
                                        rating=feedback.rating, comment=feedback.comment, via=feedback.via,
                                        correlation_id=d.msg_id)
                await act(service, district, conn, unit_code="enterprise", action="feedback",
                          action_id=feedback.feedback_id, payload=payload, appeal_id=feedback.appeal_id)

    return handle


# --- what escalation tells us ---------------------------------------------------------------------


def order_note_handler(service: Service, note):
    """Keeps what escalation tells about orders (``note(conn, events)``) so units see it on their lists."""

    async def handle(batch: list[Delivery]) -> None:
        async with service.pool.acquire() as conn, conn.transaction():
            await note(conn, [json.loads(d.data) for d in batch])

    return handle


async def note_deadlines(conn: asyncpg.Connection, events: list[dict]) -> None:
    """Clocks' deadlines (``ct.deadline.set``), so lists sort overdue first."""
    await store.record_deadlines(conn, [
        (e["order_id"], e["clock"], datetime.fromisoformat(e["due_at"]), datetime.fromisoformat(e["occurred_at"]))
        for e in events])


async def note_escalations(conn: asyncpg.Connection, events: list[dict]) -> None:
    """The ladder step each order reached (``ct.appeal.escalated``)."""
    await store.record_escalations(conn, [(e["order_id"], e["level"]) for e in events])


def close_unrated_appeals(district: District):
    """Closes, as not rated, appeals whose reply waited longer than ``RATING_WAIT_DAYS`` for a rating."""

    async def close_unrated(service: Service) -> None:
        wait = timedelta(days=service.settings.rating_wait_days)
        while True:
            try:
                async with service.pool.acquire() as conn:
                    due = await store.awaiting_rating_since(conn, clock.now() - wait)
                for appeal_id in due:
                    async with service.pool.acquire() as conn, conn.transaction():
                        appeal = await store.lock_appeal(conn, appeal_id)
                        order = await store.rated_order(conn, appeal_id)
                        outcome = domain.close_unrated(district, order, appeal, clock.now())
                        if isinstance(outcome, Accepted):
                            await store.save_appeal(conn, outcome.appeal)
                            await store.save_orders(conn, [outcome.new_state])
                            await outbox.put_many(conn, SERVICE, [(s.subject, s.build()) for s in outcome.events])
                if due:
                    service.wake_outbox()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("not-rated sweep failed", extra={"error": repr(exc)})
            await asyncio.sleep(max(1.0, service.settings.scan_interval_s * 10))

    return close_unrated
