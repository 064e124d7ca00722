"""Dispatch rules, pure: routing an appeal to a unit, and the life of a work order.

Nothing here does I/O. Every function takes what it needs (the district
configuration, the current states, ``now``) and returns new immutable states
plus the events they cause, as :class:`EventSpec` values that the use cases
(``use_cases.py``) turn into the models of ``shared.contracts.events`` and stage
on the unit of work, committed with the states. An action arrives as a command
of ``shared.contracts.inbound`` (:data:`ACTIONS` is read from them) and is
decided on its :class:`ActionPayload`.

Which file holds what:

================  =====================================================================
routing.py        派单: scoring units, the lead and co-handling (协办) units, the manual queue
work_order.py     the work order (工单), its states and roles, the appeal's state, the payload
outcome.py        what a decision returns: Accepted (states + events) or Refused (a broken rule)
rules.py          the business rules as named objects, and the refusal reason codes
checks.py         the checks an action starts with: the order, the acting unit, the target unit
issuing.py        issuing a new order and the fields of order events
holding_unit.py   the holding unit's actions: 签收 sign, 退单 return, progress, 延期 extend, reply, escalate,
                  待补充材料 pause and resume
lead_unit.py      the lead unit's decisions: extensions, returns, redispatch, dispatch by hand
rating.py         the enterprise's rating: close, or reopen (重办); closing unrated
starting.py       starting a registered appeal: answer, queue or dispatch
actions.py        the one entry point, decide(), over ACTIONS (read from the commands)
================  =====================================================================
"""

from services.dispatch.domain.actions import ACTIONS, decide
from services.dispatch.domain.holding_unit import (
    pause_clock,
    reply_to_appeal,
    report_progress,
    request_escalation,
    request_extension,
    resume_clock,
    return_order,
    sign_for,
)
from services.dispatch.domain.issuing import escalation_policy
from services.dispatch.domain.lead_unit import (
    decide_return,
    deny_extension,
    dispatch_by_hand,
    grant_extension,
    redispatch,
)
from services.dispatch.domain.outcome import Accepted, EventSpec, Outcome, Refused
from services.dispatch.domain.rating import apply_feedback, close_unrated, close_with_appeal
from services.dispatch.domain.routing import (
    AREA_POINTS,
    CATEGORY_DEFAULT_POINTS,
    CATEGORY_RULE_POINTS,
    FALLBACK_CATEGORY,
    KEYWORD_POINTS,
    NAMED_POINTS,
    PROPOSED_POINTS,
    RoutingDecision,
    RoutingInput,
    UnitChoice,
    handling_units,
    known_answer,
    parse_proposed_units,
    resolve_category,
    resolve_unit,
    route,
)
from services.dispatch.domain.rules import (
    ILLEGAL_TRANSITION,
    INVALID,
    MAX_RETURNS,
    NOT_YOUR_ORDER,
    RETURN_LIMIT_REACHED,
    UNKNOWN_ORDER,
    BusinessRule,
)
from services.dispatch.domain.starting import start_appeal, summarize
from services.dispatch.domain.work_order import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    ActionPayload,
    AppealState,
    AppealStatus,
    OrderStatus,
    Role,
    WorkOrder,
    WorkOrderState,
    order_id_for,
)

__all__ = [
    "ACTIONS", "AREA_POINTS", "CATEGORY_DEFAULT_POINTS", "CATEGORY_RULE_POINTS", "FALLBACK_CATEGORY",
    "FINAL_STATUSES", "ILLEGAL_TRANSITION", "INVALID", "KEYWORD_POINTS", "LIVE_STATUSES", "MAX_RETURNS",
    "NAMED_POINTS", "NOT_YOUR_ORDER", "PROPOSED_POINTS", "RETURN_LIMIT_REACHED", "UNKNOWN_ORDER",
    "Accepted", "ActionPayload", "AppealState", "AppealStatus", "BusinessRule", "EventSpec", "OrderStatus",
    "Outcome", "Refused", "Role", "RoutingDecision", "RoutingInput", "UnitChoice", "WorkOrder", "WorkOrderState",
    "apply_feedback", "close_unrated", "close_with_appeal", "decide", "decide_return", "deny_extension",
    "dispatch_by_hand", "escalation_policy", "grant_extension", "handling_units", "known_answer", "order_id_for",
    "parse_proposed_units", "pause_clock", "redispatch", "resume_clock", "reply_to_appeal", "report_progress", "request_escalation",
    "request_extension", "resolve_category", "resolve_unit", "return_order", "route", "sign_for", "start_appeal",
    "summarize",
]
