"""Starting an appeal: answer a consultation at once, queue an unclear appeal, or dispatch its orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.dispatch.domain.issuing import base_fields, issue_order
from services.dispatch.domain.outcome import Accepted, EventSpec
from services.dispatch.domain.routing import RoutingDecision, RoutingInput, known_answer, route
from services.dispatch.domain.text_model import ModelSuggestion
from services.dispatch.domain.work_order import AppealState, AppealStatus, Role
from shared.contracts import subjects
from shared.contracts.events import AppealRegistered
from shared.district import District


def start_appeal(district: District, registered: AppealRegistered, now: datetime,
                 suggestion: ModelSuggestion | None = None) -> Accepted:
    """What dispatch does with a registered appeal.

    A consultation with a known answer closes at once (``ct.appeal.closed``,
    outcome ``answered``); an unclear appeal waits in the manual queue
    (``ct.appeal.queued``, with its three best candidates); otherwise one
    ``ct.order.dispatched`` per order, lead first, naming the routing model's
    version when a model counted. ``suggestion`` is that model's opinion of the appeal.
    """
    decision = route(district, RoutingInput.from_registered(registered), suggestion)
    appeal = AppealState(
        appeal_id=registered.appeal_id, received_at=registered.received_at, category=decision.category.name,
        deadline_days=decision.deadline_days, sign_hours=decision.sign_hours, source_ref=registered.source_ref,
        correlation_id=registered.correlation_id, urgent=registered.urgent, summary=summarize(registered.content),
        enterprise_name=registered.enterprise.name, contact_phone=registered.contact.phone,
    )
    base = base_fields(appeal, None, "system", now)
    if answer := known_answer(district, registered.content, registered.kind):
        appeal = replace(appeal, status=AppealStatus.closed)
        event = EventSpec(subjects.APPEAL_CLOSED, {**base, "outcome": "answered", "answer": answer, "unit_codes": []})
        return Accepted(None, appeal, (event,), routing=decision)
    if decision.queued or decision.lead is None:
        appeal = replace(appeal, status=AppealStatus.queued)
        event = EventSpec(subjects.APPEAL_QUEUED,
                          {**base, "reasons": list(decision.reasons), "summary": appeal.summary,
                           "candidates": candidates_of(decision, suggestion), "routing_version": decision.model_version})
        return Accepted(None, appeal, (event,), routing=decision)
    appeal, lead_order, first = issue_order(district, appeal, decision.lead.unit_code, Role.lead, now, "system",
                                            list(decision.lead.reasons))
    orders, events = [lead_order], [first]
    for choice in decision.co_units:
        appeal, co_order, ev = issue_order(district, appeal, choice.unit_code, Role.co, now, "system",
                                           list(choice.reasons))
        orders.append(co_order)
        events.append(ev)
    if decision.model_version:
        events = [EventSpec(e.subject, {**e.fields, "routing_version": decision.model_version}) for e in events]
    return Accepted(None, appeal, tuple(events), tuple(orders), routing=decision)


def candidates_of(decision: RoutingDecision, suggestion: ModelSuggestion | None, n: int = 3) -> list[dict]:
    """The ``n`` best candidates of a decision as ``ct.appeal.queued`` lists them: unit, score, confidence, reasons."""
    probabilities = suggestion.probabilities if suggestion else {}
    return [{"unit_code": c.unit_code, "unit": c.unit, "score": c.score,
             "confidence": round(probabilities[c.unit_code], 3) if c.unit_code in probabilities else None,
             "reasons": list(c.reasons)} for c in decision.top(n)]


def summarize(content: str, limit: int = 60) -> str:
    """The first ``limit`` characters of an appeal, on one line, for notifications."""
    text = " ".join(content.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
