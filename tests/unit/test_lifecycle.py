"""The work order's life (工单): each transition and refusal, then random sequences of actions."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.dispatch.domain import (
    ACTIONS,
    ILLEGAL_TRANSITION,
    INVALID,
    MAX_RETURNS,
    NOT_YOUR_ORDER,
    RETURN_LIMIT_REACHED,
    UNKNOWN_ORDER,
    Accepted,
    ActionPayload,
    AppealState,
    AppealStatus,
    OrderStatus,
    Refused,
    Role,
    WorkOrder,
    close_unrated,
    close_with_appeal,
    decide,
    order_id_for,
    rules,
    start_appeal,
)
from services.dispatch.domain.following import rate_follower
from shared.contracts import subjects as s
from shared.contracts.common import SHANGHAI, AppealKind, Channel
from shared.contracts.events import AppealRegistered, ClockPause, EventProposal, OrderDispatched, Party
from shared.contracts.inbound import LEAD_ACTIONS as LEAD_ACTION_NAMES
from shared.contracts.inbound import UNIT_ACTIONS, RequestExtension, UnitAction, UnitActionName
from shared.district import District, load_district

NOW = datetime(2019, 6, 14, 9, 30, tzinfo=SHANGHAI)
LEAD = "approval_bureau"
TOWN = "huangshui_town"
CASE_D = "公司部分生产电源与新鑫再生资源市场用电相通，市场将对商铺整改并停电停水，会导致公司生产受阻，望协调。"


@cache
def district() -> District:
    return load_district()


def appeal(**changes) -> AppealState:
    base = AppealState(
        appeal_id="AP1", received_at=NOW - timedelta(days=1), category="水电气保障", deadline_days=10, sign_hours=4,
        source_ref="hotline:CALL-1", correlation_id="corr-1", summary="生产电源与市场用电相通", enterprise_name="成都金科达铝业有限公司",
        contact_phone="13812345678", orders_issued=1, unit_codes=(TOWN,),
    )
    return replace(base, **changes)


def order(status: OrderStatus = OrderStatus.dispatched, **changes) -> WorkOrder:
    base = WorkOrder(order_id="AP1-W01", appeal_id="AP1", unit_code=TOWN, status=status, dispatched_at=NOW)
    return replace(base, **changes)


def act(action: str, acted_on: WorkOrder | None, actor_unit: str, state: AppealState | None = None, /, **payload):
    """``actor_unit`` does ``action`` on ``acted_on``; ``payload`` are the action's fields."""
    payload_ = ActionPayload(actor="张伟", **payload)
    return decide(district(), acted_on, action, actor_unit, payload_, state or appeal(), NOW)


def accepted(outcome) -> Accepted:
    assert isinstance(outcome, Accepted), outcome
    for event in outcome.events:
        event.build("ev-1")  # every event is a valid contract model
    return outcome


def refused(outcome, reason: str) -> Refused:
    assert isinstance(outcome, Refused), outcome
    assert outcome.reason == reason, outcome
    return outcome


# --- signing -------------------------------------------------------------------------------


def test_unit_signs_for_its_dispatched_order():
    result = accepted(act("sign", order(), TOWN))
    assert result.new_state.status == OrderStatus.signed
    assert result.new_state.signed_at == NOW
    assert result.subjects == (s.ORDER_SIGNED,)
    fields = result.events[0].fields
    assert fields["order_id"] == "AP1-W01" and fields["unit_code"] == TOWN and fields["unit"] == "黄水镇"
    assert fields["appeal_id"] == "AP1" and fields["actor"] == "张伟" and fields["correlation_id"] == "corr-1"


def test_signing_twice_is_an_illegal_transition():
    refused(act("sign", order(OrderStatus.signed), TOWN), ILLEGAL_TRANSITION)


def test_another_unit_cannot_act_on_an_order_it_does_not_hold():
    result = refused(act("sign", order(), "energy_office"), NOT_YOUR_ORDER)
    assert "黄水镇" in result.detail


def test_the_lead_unit_cannot_do_a_holders_action_on_another_units_order():
    refused(act("sign", order(), LEAD), NOT_YOUR_ORDER)
    refused(act("reply", order(OrderStatus.signed), LEAD, reply="已处理", resolved=True), NOT_YOUR_ORDER)


def test_action_on_an_unknown_order_is_refused():
    refused(act("sign", None, TOWN), UNKNOWN_ORDER)
    refused(act("grant_extension", None, LEAD), UNKNOWN_ORDER)


def test_unknown_action_is_invalid():
    refused(act("approve", order(), TOWN), INVALID)


# --- returns (退单) ----------------------------------------------------------------------------


def test_unit_returns_a_dispatched_order_with_its_reason():
    result = accepted(act("return", order(), TOWN, reason="不属于本镇职责"))
    assert result.new_state.status == OrderStatus.returned
    assert result.appeal.return_count == 1
    assert result.subjects == (s.ORDER_RETURNED,)
    assert result.events[0].fields["reason"] == "不属于本镇职责"
    assert result.events[0].fields["return_count"] == 1


def test_return_without_a_reason_is_invalid():
    refused(act("return", order(), TOWN), INVALID)


def test_return_after_signing_is_illegal():
    refused(act("return", order(OrderStatus.signed), TOWN, reason="不属于本镇职责"), ILLEGAL_TRANSITION)


def test_third_return_of_an_appeal_is_refused():
    result = refused(act("return", order(), TOWN, appeal(return_count=MAX_RETURNS), reason="再次退单"),
                     RETURN_LIMIT_REACHED)
    assert "binding" in result.detail


def test_after_two_returns_the_lead_units_decision_is_binding():
    state, current = appeal(), order()
    for _ in range(MAX_RETURNS):
        returned = accepted(act("return", current, TOWN, state, reason="不属于本镇职责"))
        state, current = returned.appeal, returned.new_state
        sent_back = accepted(act("decide_return", current, LEAD, state, accept=False))
        state, current = sent_back.appeal, sent_back.new_state
        assert current.status == OrderStatus.dispatched
    refused(act("return", current, TOWN, state, reason="仍不属于本镇"), RETURN_LIMIT_REACHED)
    assert accepted(act("sign", current, TOWN, state)).new_state.status == OrderStatus.signed


def test_lead_rejects_a_return_and_the_order_goes_back_to_the_unit():
    result = accepted(act("decide_return", order(OrderStatus.returned), LEAD, accept=False))
    assert result.new_state.status == OrderStatus.dispatched
    assert result.subjects == (s.ORDER_RETURN_DECIDED,)
    assert result.events[0].fields["accepted"] is False
    assert result.new_orders == ()


def test_lead_accepts_a_return_and_the_appeal_waits_in_the_manual_queue():
    result = accepted(act("decide_return", order(OrderStatus.returned), LEAD, accept=True))
    assert result.new_state.status == OrderStatus.cancelled
    assert result.appeal.status == AppealStatus.queued
    assert result.subjects == (s.ORDER_RETURN_DECIDED, s.APPEAL_QUEUED)


def test_accepted_return_of_a_co_handling_order_leaves_the_appeal_in_progress():
    result = accepted(act("decide_return", order(OrderStatus.returned, role=Role.co), LEAD, accept=True))
    assert result.new_state.status == OrderStatus.cancelled
    assert result.appeal.status == AppealStatus.in_progress
    assert result.subjects == (s.ORDER_RETURN_DECIDED,)


def test_lead_accepts_a_return_and_dispatches_the_appeal_to_another_unit():
    result = accepted(act("decide_return", order(OrderStatus.returned), LEAD, accept=True, unit_code="energy_office"))
    assert result.subjects == (s.ORDER_RETURN_DECIDED, s.ORDER_DISPATCHED)
    [new] = result.new_orders
    assert new.order_id == order_id_for("AP1", 2) == "AP1-W02"
    assert (new.unit_code, new.role, new.status) == ("energy_office", Role.lead, OrderStatus.dispatched)
    assert new.replaces_order_id == "AP1-W01"
    assert result.appeal.orders_issued == 2 and result.appeal.unit_codes == (TOWN, "energy_office")
    dispatched = result.events[1].build()
    assert isinstance(dispatched, OrderDispatched)
    assert dispatched.unit == "区新科局能源办" and dispatched.deadline_days == 10 and dispatched.sign_hours == 4
    assert dispatched.policy.district_leader == "leader_chen"


def test_only_the_lead_unit_decides_returns():
    refused(act("decide_return", order(OrderStatus.returned), TOWN, accept=True), NOT_YOUR_ORDER)


def test_deciding_a_return_that_was_not_made_is_illegal():
    refused(act("decide_return", order(OrderStatus.signed), LEAD, accept=False), ILLEGAL_TRANSITION)


# --- progress, extensions, escalation, reply ---------------------------------------------------------


def test_unit_reports_progress_on_a_signed_order():
    result = accepted(act("progress", order(OrderStatus.signed), TOWN, note="已约企业现场核实"))
    assert result.new_state == order(OrderStatus.signed)
    assert result.subjects == (s.ORDER_PROGRESSED,)


def test_progress_before_signing_is_illegal():
    refused(act("progress", order(), TOWN, note="已约企业现场核实"), ILLEGAL_TRANSITION)


def test_extension_request_waits_for_the_lead_unit_which_grants_it():
    asked = accepted(act("extend", order(OrderStatus.signed), TOWN, days=60, reason="需建设户外箱式配电站"))
    assert asked.new_state.extension_requested and asked.new_state.pending_extension_days == 60
    assert asked.subjects == (s.ORDER_EXTENSION_REQUESTED,)
    granted = accepted(act("grant_extension", asked.new_state, LEAD))
    assert not granted.new_state.extension_requested
    assert granted.new_state.extension_days_granted == 60
    assert granted.events[0].fields["days"] == 60 and granted.events[0].fields["total_extension_days"] == 60
    again = accepted(act("extend", granted.new_state, TOWN, days=20, reason="设备到货延迟"))
    partly = accepted(act("grant_extension", again.new_state, LEAD, days=10))
    assert partly.new_state.extension_days_granted == 70


def test_a_second_extension_request_before_the_decision_is_illegal():
    pending = order(OrderStatus.signed, pending_extension_days=5, pending_extension_reason="x")
    refused(act("extend", pending, TOWN, days=5, reason="再延"), ILLEGAL_TRANSITION)


def test_lead_denies_an_extension_and_the_deadline_stands():
    pending = order(OrderStatus.signed, pending_extension_days=5, pending_extension_reason="x")
    result = accepted(act("deny_extension", pending, LEAD, reason="时限内可办结"))
    assert not result.new_state.extension_requested and result.new_state.extension_days_granted == 0
    assert result.subjects == (s.ORDER_EXTENSION_DENIED,)


def test_granting_without_a_request_is_illegal_and_units_cannot_grant_themselves():
    refused(act("grant_extension", order(OrderStatus.signed), LEAD), ILLEGAL_TRANSITION)
    pending = order(OrderStatus.signed, pending_extension_days=5, pending_extension_reason="x")
    refused(act("grant_extension", pending, TOWN), NOT_YOUR_ORDER)


def test_extension_needs_positive_days_and_a_reason():
    refused(act("extend", order(OrderStatus.signed), TOWN, days=0, reason="x"), INVALID)
    refused(act("extend", order(OrderStatus.signed), TOWN, days=3), INVALID)


def test_unit_flags_a_difficult_order_once():
    result = accepted(act("escalate", order(OrderStatus.signed), TOWN, reason="涉及多部门，需区领导协调"))
    assert result.new_state.escalated
    assert result.subjects == (s.ORDER_ESCALATION_REQUESTED,)
    refused(act("escalate", result.new_state, TOWN, reason="再次"), ILLEGAL_TRANSITION)


def test_unit_replies_and_a_pending_extension_lapses():
    pending = order(OrderStatus.signed, pending_extension_days=5, pending_extension_reason="x")
    result = accepted(act("reply", pending, TOWN, reply="已协调供电部门制定供电方案", resolved=True))
    assert result.new_state.status == OrderStatus.replied
    assert not result.new_state.extension_requested
    assert result.events[0].fields["contact_phone"] == "13812345678"
    refused(act("grant_extension", result.new_state, LEAD), ILLEGAL_TRANSITION)


def test_reply_needs_the_text_and_whether_it_is_resolved():
    refused(act("reply", order(OrderStatus.signed), TOWN, reply="已处理"), INVALID)


# --- redispatch and dispatch by hand ----------------------------------------------------------------


def test_lead_redispatches_a_signed_order_to_another_unit():
    result = accepted(act("redispatch", order(OrderStatus.signed), LEAD, unit_code="power_supply"))
    assert result.new_state.status == OrderStatus.cancelled
    [new] = result.new_orders
    assert new.unit_code == "power_supply" and new.status == OrderStatus.dispatched and new.role == Role.lead
    # the old order ends as after an accepted return, so its clocks stop and its unit hears
    assert result.subjects == (s.ORDER_RETURN_DECIDED, s.ORDER_DISPATCHED)
    assert result.events[0].fields["order_id"] == "AP1-W01" and result.events[0].fields["accepted"] is True
    assert result.events[1].fields["replaces_order_id"] == "AP1-W01"
    assert result.appeal.status == AppealStatus.in_progress


def test_redispatching_a_returned_order_accepts_the_return_first():
    result = accepted(act("redispatch", order(OrderStatus.returned), LEAD, unit_code="power_supply"))
    assert result.subjects == (s.ORDER_RETURN_DECIDED, s.ORDER_DISPATCHED)
    assert result.events[0].fields["accepted"] is True


def test_redispatch_needs_another_handling_unit_and_a_live_order():
    refused(act("redispatch", order(), LEAD, unit_code=TOWN), INVALID)
    refused(act("redispatch", order(), LEAD, unit_code="supervision_office"), INVALID)
    refused(act("redispatch", order(), LEAD, unit_code="no_such_unit"), INVALID)
    refused(act("redispatch", order(OrderStatus.replied), LEAD, unit_code="power_supply"), ILLEGAL_TRANSITION)
    refused(act("redispatch", order(), "power_supply", unit_code="power_supply"), NOT_YOUR_ORDER)


def test_lead_dispatches_a_queued_appeal_by_hand_with_co_units():
    queued = appeal(status=AppealStatus.queued, orders_issued=0, unit_codes=())
    result = accepted(act("dispatch", None, LEAD, queued, unit_code=TOWN, co_units=("energy_office", "power_supply")))
    assert result.new_state is None
    assert [(o.unit_code, o.role) for o in result.new_orders] == [
        (TOWN, Role.lead), ("energy_office", Role.co), ("power_supply", Role.co)]
    assert [o.order_id for o in result.new_orders] == ["AP1-W01", "AP1-W02", "AP1-W03"]
    assert result.subjects == (s.ORDER_DISPATCHED,) * 3
    assert result.appeal.status == AppealStatus.in_progress


def test_dispatch_by_hand_only_by_the_lead_unit_and_only_from_the_queue():
    queued = appeal(status=AppealStatus.queued)
    refused(act("dispatch", None, TOWN, queued, unit_code=TOWN), NOT_YOUR_ORDER)
    refused(act("dispatch", None, LEAD, appeal(), unit_code=TOWN), ILLEGAL_TRANSITION)
    refused(act("dispatch", None, LEAD, queued, unit_code=TOWN, co_units=(TOWN,)), INVALID)
    refused(act("dispatch", None, LEAD, queued), INVALID)


# --- feedback and closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("rating", ["satisfied", "basically_satisfied"])
def test_satisfied_feedback_closes_the_order_and_the_appeal(rating):
    result = accepted(act("feedback", order(OrderStatus.replied), "", rating=rating))
    assert result.new_state.status == OrderStatus.closed
    assert result.closes_appeal
    assert result.subjects == (s.APPEAL_CLOSED,)
    assert result.events[0].fields["outcome"] == rating
    assert result.events[0].fields["unit_codes"] == [TOWN]


def test_unsatisfied_feedback_reopens_the_appeal_to_the_same_unit():
    first = order(OrderStatus.replied, reopen_count=0)
    result = accepted(act("feedback", first, "", rating="unsatisfied", comment="配电站迟迟未建"))
    assert result.new_state.status == OrderStatus.reopened
    [new] = result.new_orders
    assert (new.unit_code, new.role, new.reopen_count, new.status) == (TOWN, Role.lead, 1, OrderStatus.dispatched)
    assert result.subjects == (s.APPEAL_REOPENED, s.ORDER_DISPATCHED)
    reopened, dispatched = result.events
    assert reopened.fields["order_id"] == new.order_id and reopened.fields["reopen_count"] == 1
    assert reopened.fields["comment"] == "配电站迟迟未建"
    assert dispatched.fields["reopen_count"] == 1
    again = accepted(act("feedback", replace(new, status=OrderStatus.replied), "", result.appeal, rating="unsatisfied"))
    assert again.new_orders[0].reopen_count == 2


def test_feedback_rates_only_a_replied_lead_order():
    refused(act("feedback", order(OrderStatus.signed), "", rating="satisfied"), ILLEGAL_TRANSITION)
    refused(act("feedback", order(OrderStatus.replied, role=Role.co), "", rating="satisfied"), ILLEGAL_TRANSITION)
    refused(act("feedback", order(OrderStatus.replied), "", rating="great"), INVALID)
    refused(act("feedback", None, "", rating="satisfied"), UNKNOWN_ORDER)


def test_a_replied_order_without_a_rating_in_time_closes_unrated():
    result = accepted(close_unrated(district(), order(OrderStatus.replied), appeal(), NOW))
    assert result.events[0].fields["outcome"] == "not_rated"
    assert result.closes_appeal
    refused(close_unrated(district(), order(OrderStatus.signed), appeal(), NOW), ILLEGAL_TRANSITION)


def test_co_handling_orders_close_with_their_appeal():
    co = order(OrderStatus.signed, order_id="AP1-W02", unit_code="energy_office", role=Role.co,
               pending_extension_days=3)
    closed = close_with_appeal(co, NOW)
    assert closed.status == OrderStatus.closed and not closed.extension_requested
    cancelled = order(OrderStatus.cancelled)
    assert close_with_appeal(cancelled, NOW) is cancelled


# --- refusal notice and inbound payload -----------------------------------------------------------------


def test_a_refusal_gives_the_order_rejected_notice_without_changing_anything():
    outcome = refused(act("sign", order(), "energy_office"), NOT_YOUR_ORDER)
    notice = outcome.rejection(action="sign", unit_code="energy_office", now=NOW, order_id="AP1-W01",
                               appeal_id="AP1", action_id="act-1").build("ev-9")
    assert notice.reason == "not_your_order" and notice.order_id == "AP1-W01"
    assert notice.rule == "OrderMustBeHeldByActingUnit"
    assert outcome.rejection(action="sign", unit_code="x", now=NOW).subject == s.ORDER_REJECTED


def test_payload_comes_from_the_inbound_unit_action():
    message = UnitAction(action_id="act-7", order_id="AP1-W01", actor="李四", days=5, reason="需协调",
                         co_units=["power_supply"])
    command, errors = message.command("extend")
    assert errors == [] and isinstance(command, RequestExtension)
    payload = ActionPayload.of(command, correlation_id="corr-7")
    assert (payload.actor, payload.days, payload.reason) == ("李四", 5, "需协调")
    assert payload.co_units == ()  # an extension carries no co-handling units: the field is not the command's
    result = accepted(decide(district(), order(OrderStatus.signed), "extend", TOWN, payload, appeal(), NOW))
    assert result.events[0].fields["correlation_id"] == "corr-7"
    dispatch, _ = UnitAction(action_id="act-8", actor="王科长", appeal_id="AP1", unit_code=TOWN,
                             co_units=["power_supply"]).command("dispatch")
    assert ActionPayload.of(dispatch).co_units == ("power_supply",)


def test_an_action_lacking_its_fields_names_each_one_and_the_action_names_are_the_commands():
    _, errors = UnitAction(action_id="act-9", order_id="AP1-W01", actor="李四").command("extend")
    assert {e.field for e in errors} == {"days", "reason"}
    _, errors = UnitAction(action_id="act-9", order_id="AP1-W01", actor="李四").command("feedback")
    assert [e.field for e in errors] == ["action"]
    assert set(ACTIONS) == {*get_args(UnitActionName), "feedback"}
    assert set(UNIT_ACTIONS) | set(LEAD_ACTION_NAMES) == set(get_args(UnitActionName))
    assert LEAD_ACTIONS == set(LEAD_ACTION_NAMES)  # the random sequences' list of lead actions


# --- each refusal names its rule ------------------------------------------------------------------------


QUEUED = {"status": AppealStatus.queued, "orders_issued": 0, "unit_codes": ()}
REFUSALS = [
    pytest.param(lambda: act("sign", None, TOWN), "OrderMustExist", UNKNOWN_ORDER,
                 id="acting on an unknown order"),
    pytest.param(lambda: act("sign", order(appeal_id="AP2"), TOWN), "OrderMustBelongToAppeal", INVALID,
                 id="acting on another appeal's order"),
    pytest.param(lambda: act("sign", order(), "energy_office"), "OrderMustBeHeldByActingUnit", NOT_YOUR_ORDER,
                 id="another unit signs"),
    pytest.param(lambda: act("grant_extension", order(OrderStatus.signed, pending_extension_days=5), TOWN, days=5),
                 "OnlyLeadUnitMayDecide", NOT_YOUR_ORDER, id="the holding unit grants its own extension"),
    pytest.param(lambda: act("dispatch", None, TOWN, appeal(**QUEUED), unit_code=TOWN),
                 "OnlyLeadUnitMayDecide", NOT_YOUR_ORDER, id="a town dispatches by hand"),
    pytest.param(lambda: act("sign", order(OrderStatus.signed), TOWN), "ActionMustBeLegalInState", ILLEGAL_TRANSITION,
                 id="signing twice"),
    pytest.param(lambda: act("return", order(), TOWN, appeal(return_count=MAX_RETURNS), reason="再次退单"),
                 "ReturnsMustNotExceedLimit", RETURN_LIMIT_REACHED, id="a third return"),
    pytest.param(lambda: act("extend", order(OrderStatus.signed, pending_extension_days=5), TOWN, days=5, reason="再延"),
                 "OneExtensionRequestAtATime", ILLEGAL_TRANSITION, id="a second extension request"),
    pytest.param(lambda: act("grant_extension", order(OrderStatus.signed), LEAD), "ExtensionMustBePending",
                 ILLEGAL_TRANSITION, id="granting an extension nobody asked for"),
    pytest.param(lambda: act("escalate", order(OrderStatus.signed, escalated=True), TOWN, reason="再次"),
                 "OrderIsEscalatedOnce", ILLEGAL_TRANSITION, id="escalating twice"),
    pytest.param(lambda: act("pause", order(OrderStatus.signed, paused_at=NOW), TOWN, reason="再停"),
                 "ClockIsPausedOnce", ILLEGAL_TRANSITION, id="pausing a paused clock"),
    pytest.param(lambda: act("resume", order(OrderStatus.signed), TOWN), "ClockMustBePausedToResume",
                 ILLEGAL_TRANSITION, id="resuming a running clock"),
    pytest.param(lambda: act("pause", order(OrderStatus.signed, pauses=tuple(
                     ClockPause(pause_id=f"AP1-W01:P{n}", order_id="AP1-W01", started_at=NOW, ended_at=NOW,
                                max_working_days=10) for n in (1, 2))), TOWN, reason="第三次"),
                 "PausesMustNotExceedLimit", ILLEGAL_TRANSITION, id="a third pause"),
    pytest.param(lambda: act("dispatch", order(), LEAD, appeal(**QUEUED), unit_code=TOWN),
                 "DispatchByHandTakesNoOrder", ILLEGAL_TRANSITION, id="dispatching an order by hand"),
    pytest.param(lambda: act("dispatch", None, LEAD, appeal(), unit_code=TOWN), "AppealMustBeQueued",
                 ILLEGAL_TRANSITION, id="dispatching an appeal that is not queued"),
    pytest.param(lambda: act("feedback", order(OrderStatus.signed), "", rating="satisfied"), "OrderMustAwaitRating",
                 ILLEGAL_TRANSITION, id="rating an order before its reply"),
    pytest.param(lambda: close_unrated(district(), order(OrderStatus.signed), appeal(), NOW), "OrderMustAwaitRating",
                 ILLEGAL_TRANSITION, id="closing unrated an order before its reply"),
    pytest.param(lambda: rate_follower(district(), appeal(**{**QUEUED, "status": AppealStatus.following}), None,
                                       ActionPayload(rating="satisfied"), NOW),
                 "DuplicateIsRatedAfterItsMastersReply", ILLEGAL_TRANSITION,
                 id="rating a duplicate before its master's reply reached it"),
    pytest.param(lambda: act("approve", order(), TOWN), "ActionMustBeKnown", INVALID, id="an unknown action"),
    pytest.param(lambda: act("return", order(), TOWN), "RequiredFieldsMustBeGiven", INVALID,
                 id="a return without a reason"),
    pytest.param(lambda: act("redispatch", order(), LEAD), "RequiredFieldsMustBeGiven", INVALID,
                 id="a redispatch without a unit"),
    pytest.param(lambda: act("extend", order(OrderStatus.signed), TOWN, days=0, reason="x"),
                 "ExtensionDaysMustBePositive", INVALID, id="asking for zero days"),
    pytest.param(lambda: act("feedback", order(OrderStatus.replied), "", rating="great"), "RatingMustBeKnown",
                 INVALID, id="an unknown rating"),
    pytest.param(lambda: act("redispatch", order(), LEAD, unit_code="no_such_unit"), "TargetUnitMustExist",
                 INVALID, id="redispatching to an unknown unit"),
    pytest.param(lambda: act("redispatch", order(), LEAD, unit_code="supervision_office"),
                 "TargetUnitMustHandleOrders", INVALID, id="redispatching to the supervision office"),
    pytest.param(lambda: act("redispatch", order(), LEAD, unit_code=TOWN), "OrderMustMoveToAnotherUnit", INVALID,
                 id="redispatching to the unit that holds the order"),
    pytest.param(lambda: act("decide_return", order(OrderStatus.returned), LEAD, accept=True, unit_code=TOWN),
                 "OrderMustMoveToAnotherUnit", INVALID, id="sending a returned order back to its unit"),
    pytest.param(lambda: act("dispatch", None, LEAD, appeal(**QUEUED), unit_code=TOWN, co_units=(TOWN,)),
                 "CoUnitsMustBeNamedOnce", INVALID, id="naming the lead unit as co-handler too"),
]


@pytest.mark.parametrize(("outcome", "rule", "reason"), REFUSALS)
def test_each_refusal_names_the_rule_it_broke(outcome, rule, reason):
    result = refused(outcome(), reason)
    assert result.rule == rule
    assert getattr(rules, rule).reason == reason
    assert result.detail


def test_the_refusals_above_cover_every_rule_the_domain_applies():
    named = {p.values[1] for p in REFUSALS}
    # ActionMustBeWellFormed is the handler's: a message that does not parse never reaches the rules
    assert named | {"ActionMustBeWellFormed"} == {rule.name for rule in rules.RULES}


REASONS_PUBLISHED = {"unknown_order", "not_your_order", "illegal_transition", "return_limit_reached", "invalid"}


def test_every_rule_is_named_after_its_class_and_reports_a_public_reason():
    for rule in rules.RULES:
        assert rule.name == rule.__name__
        assert rule.reason in REASONS_PUBLISHED
        assert rule.message


def test_a_refusal_built_from_its_reason_alone_names_the_reasons_general_rule():
    assert Refused(UNKNOWN_ORDER, "no such appeal").rule == "OrderMustExist"
    assert Refused(INVALID, "days: not a number").rule == "ActionMustBeWellFormed"
    assert Refused("something_new").rule == ""


def test_a_refusal_because_of_a_rule_says_the_rules_message_when_given_no_detail():
    result = Refused.because(rules.ReturnsMustNotExceedLimit)
    assert (result.reason, result.rule) == ("return_limit_reached", "ReturnsMustNotExceedLimit")
    assert result.detail == rules.ReturnsMustNotExceedLimit.message
    notice = result.rejection(action="return", unit_code=TOWN, now=NOW).build("ev-1")
    assert notice.rule == "ReturnsMustNotExceedLimit"


# --- starting an appeal -------------------------------------------------------------------------------------


def registered(content: str, kind: AppealKind = AppealKind.appeal, hint: str | None = None,
               proposed: str | None = None, appeal_id: str = "AP9") -> AppealRegistered:
    proposal = None
    if proposed:
        proposal = EventProposal(event_id="E-2019-06-24", event_kind="sub", event_date="2019-06-24",
                                 organizer_unit="区行政审批局", item_no=1, proposed_unit=proposed)
    return AppealRegistered(
        occurred_at=NOW, appeal_id=appeal_id, source_ref="hotline:CALL-9", correlation_id="corr-9",
        channel=Channel.hotline, source_id="CALL-9", enterprise=Party(name="成都金科达铝业有限公司"),
        contact=Party(name="王洪", phone="13812345678"), content=content, category_hint=hint, kind=kind,
        received_at=NOW - timedelta(hours=1), proposal=proposal,
    )


def test_case_d_starts_with_a_lead_order_for_the_town_and_two_co_handling_orders():
    result = accepted(start_appeal(district(), registered(CASE_D, hint="水电气保障"), NOW))
    assert [(o.unit_code, o.role) for o in result.new_orders] == [
        (TOWN, Role.lead), ("energy_office", Role.co), ("power_supply", Role.co)]
    assert result.subjects == (s.ORDER_DISPATCHED,) * 3
    first = result.events[0].build()
    assert first.role == "lead" and first.category == "水电气保障" and first.deadline_days == 10
    assert first.received_at == NOW - timedelta(hours=1) and first.enterprise_name == "成都金科达铝业有限公司"
    assert "area 新鑫再生资源市场 → 黄水镇" in first.reasons
    assert result.appeal.status == AppealStatus.in_progress and result.appeal.orders_issued == 3
    assert result.routing.lead.unit_code == TOWN


def test_an_event_proposal_sets_the_deadline_of_the_orders():
    event = registered("企业招聘人才成本高，希望帮助解决招聘问题。", hint="人才招聘", proposed="区人社局")
    event = event.model_copy(update={"proposal": event.proposal.model_copy(update={"proposed_deadline_days": 30})})
    result = accepted(start_appeal(district(), event, NOW))
    assert result.new_orders[0].unit_code == "hr_bureau"
    assert result.events[0].fields["deadline_days"] == 30


def test_a_consultation_with_a_known_answer_closes_at_once():
    result = accepted(start_appeal(district(), registered("营业执照怎么办理？", kind=AppealKind.consultation), NOW))
    assert result.subjects == (s.APPEAL_CLOSED,)
    assert result.events[0].fields["outcome"] == "answered" and "一窗通办" in result.events[0].fields["answer"]
    assert result.new_orders == () and result.closes_appeal


def test_an_unclear_appeal_starts_in_the_manual_queue():
    result = accepted(start_appeal(district(), registered("我们急需先设立一个数据结算中心和研发中心。"), NOW))
    assert result.subjects == (s.APPEAL_QUEUED,)
    assert result.appeal.status == AppealStatus.queued
    assert result.events[0].fields["reasons"][0].startswith("no unit scored")


# --- random sequences of actions ------------------------------------------------------------------------------

ACTION_NAMES = [*ACTIONS, "bogus"]
PLAIN = {
    "sign": s.ORDER_SIGNED, "return": s.ORDER_RETURNED, "progress": s.ORDER_PROGRESSED,
    "extend": s.ORDER_EXTENSION_REQUESTED, "reply": s.ORDER_REPLIED, "escalate": s.ORDER_ESCALATION_REQUESTED,
    "grant_extension": s.ORDER_EXTENSION_GRANTED, "deny_extension": s.ORDER_EXTENSION_DENIED,
    "pause": s.ORDER_PAUSED, "resume": s.ORDER_RESUMED,
}
# (action, status before, status after) of the order acted on
ALLOWED = {
    ("sign", "dispatched", "signed"), ("return", "dispatched", "returned"),
    ("progress", "signed", "signed"), ("extend", "signed", "signed"), ("escalate", "signed", "signed"),
    ("reply", "signed", "replied"), ("grant_extension", "signed", "signed"), ("deny_extension", "signed", "signed"),
    ("decide_return", "returned", "dispatched"), ("decide_return", "returned", "cancelled"),
    ("redispatch", "dispatched", "cancelled"), ("redispatch", "signed", "cancelled"),
    ("redispatch", "returned", "cancelled"),
    ("feedback", "replied", "closed"), ("feedback", "replied", "reopened"),
    ("pause", "signed", "signed"), ("resume", "signed", "signed"),
}
REASONS = {UNKNOWN_ORDER, NOT_YOUR_ORDER, ILLEGAL_TRANSITION, RETURN_LIMIT_REACHED, INVALID}
RULES_BY_NAME = {rule.name: rule for rule in rules.RULES}
UNIT_CHOICES = [None, TOWN, "energy_office", "power_supply", "traffic_police", LEAD, "supervision_office", "nope"]


def expected_subjects(action: str, before: WorkOrder | None, payload: ActionPayload) -> tuple[str, ...]:
    """What an accepted action must publish, stated independently of the implementation."""
    if action in PLAIN:
        return (PLAIN[action],)
    if action == "decide_return":
        if not payload.accept:
            return (s.ORDER_RETURN_DECIDED,)
        if payload.unit_code:
            return (s.ORDER_RETURN_DECIDED, s.ORDER_DISPATCHED)
        return (s.ORDER_RETURN_DECIDED, s.APPEAL_QUEUED) if before.role == Role.lead else (s.ORDER_RETURN_DECIDED,)
    if action == "redispatch":
        return (s.ORDER_RETURN_DECIDED, s.ORDER_DISPATCHED)
    if action == "dispatch":
        return (s.ORDER_DISPATCHED,) * (1 + len(payload.co_units))
    if action == "feedback":
        return (s.APPEAL_CLOSED,) if payload.rating in ("satisfied", "basically_satisfied") else (
            s.APPEAL_REOPENED, s.ORDER_DISPATCHED)
    raise AssertionError(f"{action} cannot be accepted")


LEAD_ACTIONS = {"grant_extension", "deny_extension", "decide_return", "redispatch", "dispatch"}

# mostly complete payloads and the right actor, so that sequences get deep; still every wrong variant
payloads = st.builds(
    ActionPayload,
    actor=st.sampled_from(["", "张伟"]),
    reason=st.sampled_from(["不属于本单位职责", "需要协调", "涉及多部门", None]),
    note=st.sampled_from(["已现场核实", None]),
    days=st.sampled_from([5, 10, 30, 0, None]),
    reply=st.sampled_from(["已办结", "已协调", None]),
    resolved=st.sampled_from([True, False, None]),
    unit_code=st.sampled_from(UNIT_CHOICES),
    co_units=st.lists(st.sampled_from(UNIT_CHOICES[1:]), max_size=2).map(tuple),
    accept=st.sampled_from([False, True, False, None]),
    rating=st.sampled_from(["satisfied", "basically_satisfied", "unsatisfied", "unsatisfied", None, "so-so"]),
)
# actions that may be legal in each status, to drive sequences deep; the others are still drawn at random
SENSIBLE = {
    OrderStatus.dispatched: ["sign", "return", "return", "sign", "return", "redispatch"],
    OrderStatus.signed: ["progress", "extend", "grant_extension", "deny_extension", "reply", "reply", "escalate",
                         "redispatch", "pause", "resume", "pause"],
    OrderStatus.returned: ["decide_return", "decide_return", "redispatch"],
    OrderStatus.replied: ["feedback"],
}
steps = st.lists(
    st.tuples(
        st.sampled_from(ACTION_NAMES),
        st.sampled_from([True, True, True, False]),  # sensible: an action fitting the order's status
        st.integers(0, 9),  # which order: 9 names an unknown one, otherwise one of the appeal's orders
        st.sampled_from(["right", "right", "right", "holder", "lead", "other", "supervision_office"]),
        payloads,
    ),
    min_size=5,
    max_size=50,
)
starts = st.sampled_from([
    ("AP-D", CASE_D, "水电气保障"),  # a lead order and two co-handling orders
    ("AP-Q", "我们急需先设立一个数据结算中心和研发中心。", None),  # waits in the manual queue
    ("AP-E", "企业招聘人才成本高，希望帮助解决招聘问题。", "人才招聘"),  # one lead order
])


def check_world(state: AppealState, orders: dict[str, WorkOrder]) -> None:
    active_lead = [o for o in orders.values() if o.role == Role.lead and not o.is_final]
    assert len(active_lead) <= 1
    if state.status == AppealStatus.queued:
        assert active_lead == []
    if state.status == AppealStatus.in_progress:
        assert len(active_lead) == 1
    if state.status == AppealStatus.closed:
        assert all(o.is_final for o in orders.values())
    assert 0 <= state.return_count <= MAX_RETURNS
    assert state.orders_issued == len(orders)
    for o in orders.values():
        assert o.status in set(OrderStatus)
        assert not o.extension_requested or o.status == OrderStatus.signed
        assert o.unit_code != "supervision_office"


def run_script(start: tuple[str, str, str | None], script: list) -> tuple[AppealState, int]:
    """Play random steps against the rules, checking every outcome; the final appeal and the limit refusals."""
    d = district()
    appeal_id, content, hint = start
    begun = start_appeal(d, registered(content, hint=hint, appeal_id=appeal_id), NOW)
    state = begun.appeal
    orders = {o.order_id: o for o in begun.new_orders}
    returns_accepted = limit_refusals = 0
    now = NOW
    for drawn, sensible, pick, who, payload in script:
        now += timedelta(minutes=7)
        ids = sorted(orders, reverse=True)  # the newest first
        acted_on = orders[ids[pick % len(ids)]] if ids and pick < 9 else None
        action = drawn
        if sensible and state.status == AppealStatus.queued:
            action, acted_on = "dispatch", None
        elif sensible and acted_on is not None and acted_on.status in SENSIBLE:
            choices = SENSIBLE[acted_on.status]
            action = choices[ACTION_NAMES.index(drawn) % len(choices)]
        elif action == "dispatch" and pick < 5:
            acted_on = None  # dispatch by hand names no order
        holder = acted_on.unit_code if acted_on else TOWN
        if who == "right":
            who = "lead" if action in LEAD_ACTIONS else "holder"
        unit_code = {"holder": holder, "lead": LEAD, "other": "traffic_police"}.get(who, who)
        before_state, before_orders = state, dict(orders)

        outcome = decide(d, acted_on, action, unit_code, payload, state, now)

        if isinstance(outcome, Refused):
            assert outcome.reason in REASONS
            assert RULES_BY_NAME[outcome.rule].reason == outcome.reason
            assert not hasattr(outcome, "events")
            assert (state, orders) == (before_state, before_orders)
            if action == "return" and acted_on and acted_on.unit_code == unit_code and payload.reason \
                    and acted_on.status == OrderStatus.dispatched:
                assert outcome.reason == RETURN_LIMIT_REACHED and state.return_count == MAX_RETURNS
            limit_refusals += outcome.reason == RETURN_LIMIT_REACHED
            continue

        assert outcome.subjects == expected_subjects(action, acted_on, payload)
        created = {o.order_id for o in outcome.new_orders}
        for event in outcome.events:
            built = event.build("ev")
            assert built.appeal_id == state.appeal_id
            if "order_id" in event.fields:
                assert event.fields["order_id"] in orders or event.fields["order_id"] in created
        if acted_on is not None and outcome.new_state is not None:
            assert outcome.new_state.order_id == acted_on.order_id
            assert (action, acted_on.status.value, outcome.new_state.status.value) in ALLOWED
            orders[acted_on.order_id] = outcome.new_state
        else:
            assert action == "dispatch" and outcome.new_state is None
        for new in outcome.new_orders:
            assert new.order_id not in before_orders and new.status == OrderStatus.dispatched
            orders[new.order_id] = new
        returns_accepted += action == "return"
        state = outcome.appeal
        assert state.return_count == returns_accepted <= MAX_RETURNS
        if outcome.closes_appeal:
            orders = {k: close_with_appeal(o, now) for k, o in orders.items()}
        check_world(state, orders)
    return state, limit_refusals


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=starts, script=steps)
def test_random_action_sequences_never_reach_an_illegal_state(start, script):
    run_script(start, script)


return_steps = st.lists(
    st.tuples(
        st.sampled_from(["return", "decide_return", "return", "decide_return", "redispatch", "sign"]),
        st.just(False),
        st.integers(0, 9),
        st.sampled_from(["right", "right", "right", "right", "other"]),
        st.builds(ActionPayload, reason=st.sampled_from(["不属于本单位职责", "不属于本单位职责", None]),
                  unit_code=st.sampled_from([None, "energy_office", "power_supply", TOWN]),
                  accept=st.sampled_from([False, False, False, True, None])),
    ),
    min_size=10,
    max_size=40,
)
dispatched_starts = st.sampled_from([
    ("AP-D", CASE_D, "水电气保障"),
    ("AP-E", "企业招聘人才成本高，希望帮助解决招聘问题。", "人才招聘"),
])


@settings(max_examples=100, deadline=None)
@given(start=dispatched_starts, script=return_steps)
def test_returns_never_exceed_the_limit_whatever_the_lead_unit_decides(start, script):
    state, _ = run_script(start, script)
    assert state.return_count <= MAX_RETURNS
