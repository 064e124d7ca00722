"""The events escalation publishes: ``ct.deadline.set``, ``ct.deadline.warning`` and ``ct.appeal.escalated``.

An order's own steps: :func:`step_event`; an appeal's step heard once (district leader,
supervision): :func:`appeal_step_event`.

Their ids are stable per fact (:func:`stable_event_id`), so a repeat is harmless.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.escalation.domain.ladder import WARNING_LEVELS, Clock, Firing, TargetLevel, overdue_seconds, reason_for
from services.escalation.domain.order_clock import OrderFacts, OrderPlan
from shared.contracts.common import SHANGHAI
from shared.contracts.events import (
    AppealEscalated,
    DeadlineCause,
    DeadlineClock,
    DeadlineSet,
    DeadlineWarning,
    LateOrder,
    Person,
)
from shared.contracts.subjects import APPEAL_ESCALATED, DEADLINE_WARNING

if TYPE_CHECKING:
    from services.escalation.domain.appeal_steps import AppealStep

_EVENT_NAMESPACE = uuid.UUID("5b0f3a8e-7c1d-4e44-9a51-2f6c0d7e9b13")


_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


def stable_event_id(*parts: str) -> str:
    """An event id that is the same for the same fact, so a repeat is dropped by JetStream's window.

    ``esc-`` and a UUID 5 of the parts (e.g. order id and step key): the hex of
    ``uuid.uuid5(namespace, parts joined by U+001F)``, its version and variant
    bits set on the SHA-1 bytes directly (without building a ``UUID``: a third of
    the cost, two ids per dispatched order).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return "esc-" + digest.hex()


def lateness(fire_at: datetime | None, now: datetime) -> dict[str, Any]:
    """``fire_at`` and ``late_seconds`` of a fired step: how long after its time it fired (0 when on time)."""
    if fire_at is None:
        return {}
    return {"fire_at": fire_at.astimezone(SHANGHAI), "late_seconds": max(0, int((now - fire_at).total_seconds()))}


def step_reason(level: str, clock: Clock, due_at: datetime | None, requested_reason: str | None = None) -> str:
    """The reason an event of a step gives: :func:`reason_for`, or the unit's own for ``difficult``."""
    if level == "difficult":
        return f"flagged difficult or major by the unit: {requested_reason}" if requested_reason else "flagged difficult or major by the unit"
    if due_at is None:
        raise ValueError(f"a {level} step needs its deadline")
    return reason_for(Firing(level, due_at, clock, due_at))  # type: ignore[arg-type]


def _base(facts: OrderFacts, now: datetime, event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id, "occurred_at": now.astimezone(SHANGHAI), "appeal_id": facts.appeal_id,
        "source_ref": facts.source_ref, "correlation_id": facts.correlation_id, "actor": "system",
        "order_id": facts.order_id, "unit_code": facts.unit_code,
    }


def deadline_set_event(facts: OrderFacts, clock: DeadlineClock, due_at: datetime, now: datetime,
                       plan: OrderPlan | None = None, cause: DeadlineCause | None = None) -> DeadlineSet:
    """``ct.deadline.set`` for a clock started or moved; ``due_at`` in +08:00.

    Its id is stable for (order, clock, deadline) and, once the clock was
    paused, for its pauses too: a deadline back where it was before a pause is
    a new fact, not a repeat.
    """
    parts = [facts.order_id, "deadline", clock, due_at.isoformat()]
    if facts.pauses:
        parts.append("pauses:" + ",".join(f"{p.pause_id}={'open' if p.ended_at is None else p.ended_at.isoformat()}"
                                          for p in facts.pauses))
    paused = plan.paused if plan is not None and clock != "sign_for" else None
    return DeadlineSet(
        **_base(facts, now, stable_event_id(*parts)), clock=clock, due_at=due_at.astimezone(SHANGHAI), cause=cause,
        paused_since=paused.start.astimezone(SHANGHAI) if paused else None,
        resumes_by=paused.end.astimezone(SHANGHAI) if paused else None,
        paused_working_seconds=plan.paused_seconds if plan is not None and clock == "handling" else 0,
    )


def step_event(
    facts: OrderFacts,
    level: TargetLevel,
    clock: Clock,
    due_at: datetime | None,
    step_key: str,
    targets: list[dict[str, str | None]],
    now: datetime,
    requested_reason: str | None = None,
    fire_at: datetime | None = None,
) -> tuple[str, DeadlineWarning | AppealEscalated]:
    """The (subject, event) a fired step publishes: a warning, or an escalation of the appeal.

    Its id is stable for (order, step), so the same step never makes two events.
    ``fire_at``: when the step was due; the event says how late it fired (after an outage).
    """
    event_id = stable_event_id(facts.order_id, "step", step_key)
    base = _base(facts, now, event_id) | lateness(fire_at, now)
    due = due_at.astimezone(SHANGHAI) if due_at is not None else None
    reason = step_reason(level, clock, due_at, requested_reason)
    people = [Person.model_validate(t) for t in targets]
    if level in WARNING_LEVELS:
        assert due is not None
        return DEADLINE_WARNING, DeadlineWarning(**base, unit=facts.unit, clock=clock, due_at=due, level=level,
                                               targets=people, reason=reason, summary=facts.summary)
    return APPEAL_ESCALATED, AppealEscalated(
        **base, unit=facts.unit, level=level, reason=reason, clock=clock, due_at=due,
        overdue_seconds=overdue_seconds(due_at, now) if due_at is not None else 0,
        targets=people, summary=facts.summary,
    )


def appeal_step_reason(level: str, late: list[LateOrder]) -> str:
    """A short English reason: the one missed deadline, or how many orders missed theirs."""
    first = late[0]
    assert first.due_at is not None
    if len(late) == 1:
        return reason_for(Firing(level, first.due_at, "handling", first.due_at))  # type: ignore[arg-type]
    due = first.due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    whom = "the district leader" if level == "district_leader" else "the supervision office for notice"
    return (f"{len(late)} work orders past their handling deadlines (the earliest {due}); "
            f"still open, reported to {whom}")


def appeal_step_event(
    step: AppealStep,
    facts: OrderFacts,
    late: list[LateOrder],
    targets: list[dict[str, str | None]],
    now: datetime,
    fire_at: datetime | None = None,
) -> AppealEscalated:
    """The one ``ct.appeal.escalated`` of an appeal step, naming ``late`` (from :func:`late_orders`).

    ``facts``: an order of the appeal whose step fires (the appeal's summary and
    references). ``order_id``, ``unit_code``, ``unit``, ``due_at`` and
    ``overdue_seconds`` are those of the first late order.
    """
    if not late:
        raise ValueError(f"{step}: an appeal step names at least the order whose step fires")
    level: TargetLevel = step.level  # type: ignore[assignment]
    first = late[0]
    base = (_base(facts, now, step.event_id) | {"order_id": first.order_id, "unit_code": first.unit_code}
            | lateness(fire_at, now))
    return AppealEscalated(
        **base, unit=first.unit, level=level, reason=appeal_step_reason(step.level, late), clock="handling",
        due_at=first.due_at, overdue_seconds=first.overdue_seconds,
        targets=[Person.model_validate(t) for t in targets], summary=facts.summary, late_orders=late,
    )
