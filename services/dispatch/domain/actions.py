"""One entry point: :func:`decide` applies an action by its name (:data:`ACTIONS`).

Events of each accepted action (a refused one has none and changes nothing):

===========================================  =================================================
sign / return / progress / extend            ct.order.signed / returned / progressed /
/ reply / escalate / pause / resume          extension_requested / replied / escalation_requested
                                             / paused / resumed
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

from collections.abc import Callable
from datetime import datetime

from services.dispatch.domain import rules
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
from services.dispatch.domain.lead_unit import (
    decide_return,
    deny_extension,
    dispatch_by_hand,
    grant_extension,
    redispatch,
)
from services.dispatch.domain.outcome import Outcome, Refused
from services.dispatch.domain.rating import apply_feedback
from services.dispatch.domain.work_order import ActionPayload, AppealState, WorkOrder
from shared.contracts import inbound as inb
from shared.district import District

Decision = Callable[[District, WorkOrder | None, str, ActionPayload, AppealState, datetime], Outcome]
"""A decision of one action: (district, order, acting unit, payload, appeal, now) → Accepted or Refused."""

DECISION_OF: dict[type[inb.Command], Decision] = {
    inb.SignFor: sign_for,
    inb.ReturnOrder: return_order,
    inb.ReportProgress: report_progress,
    inb.RequestExtension: request_extension,
    inb.Reply: reply_to_appeal,
    inb.RequestEscalation: request_escalation,
    inb.PauseClock: pause_clock,
    inb.ResumeClock: resume_clock,
    inb.GrantExtension: grant_extension,
    inb.DenyExtension: deny_extension,
    inb.DecideReturn: decide_return,
    inb.Redispatch: redispatch,
    inb.DispatchByHand: dispatch_by_hand,
    inb.Rate: apply_feedback,
}
"""Each command of ``shared.contracts.inbound`` → the function that decides it."""

ACTIONS: dict[str, Decision] = {command.action_name(): decision for command, decision in DECISION_OF.items()}
"""Action name (the last token of ``ct.in.order.<unit_code>.<action>``, or ``feedback``) → its decision; read from the commands."""

if set(DECISION_OF) != set(inb.COMMAND_OF.values()):  # a command without a decision fails at import
    raise RuntimeError(f"commands without a decision: {set(inb.COMMAND_OF.values()) - set(DECISION_OF)}")


def decide(district: District, order: WorkOrder | None, action: str, unit_code: str, payload: ActionPayload,
           appeal: AppealState, now: datetime) -> Outcome:
    """Apply one action by ``unit_code`` to ``order`` (None when the order is unknown, or for ``dispatch``).

    Returns :class:`Accepted` with the new states and the events listed in the
    module docstring, or :class:`Refused` (unknown_order, not_your_order,
    illegal_transition, return_limit_reached, invalid) with nothing changed.
    """
    rule = ACTIONS.get(action)
    if rule is None:
        return Refused.because(rules.ActionMustBeKnown, f"action: unknown action {action!r}")
    return rule(district, order, unit_code, payload, appeal, now)
