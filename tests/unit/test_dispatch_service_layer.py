"""Dispatch's use cases on a fake unit of work: what they stage, what the inbox refuses, what a refusal says.

No database and no broker: the repository is in memory, with the behaviour of
``services/dispatch/store.py`` that the use cases rely on (an appeal inserted once,
orders upserted, a late deadline never overwriting a newer one).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from functools import cache

import pytest

from services.dispatch import use_cases
from services.dispatch.domain import AppealState, OrderStatus, WorkOrder
from services.dispatch.domain.following import Follower
from shared.contracts import subjects as s
from shared.contracts.common import SHANGHAI, AppealKind, Channel, FieldError
from shared.contracts.events import AppealEscalated, AppealRegistered, DeadlineSet, OrderPolicy, OrderRejected, Party
from shared.contracts.inbound import (
    DispatchByHand,
    Feedback,
    Reply,
    RequestExtension,
    SignFor,
    UnitAction,
)
from shared.district import District, load_district
from shared.unit_of_work import UndeclaredPublication
from tests.unit.fakes import FakeRouting, FakeUnitOfWork

NOW = datetime(2019, 6, 14, 9, 30, tzinfo=SHANGHAI)
TOWN = "huangshui_town"
LEAD = "approval_bureau"
CASE_D = "公司部分生产电源与新鑫再生资源市场用电相通，市场将对商铺整改并停电停水，会导致公司生产受阻，望协调。"
UNCLEAR = "我们急需先设立一个数据结算中心和研发中心。"


@cache
def district() -> District:
    return load_district()


class FakeAppeals:
    """``AppealRepository`` in memory."""

    def __init__(self) -> None:
        self.appeals: dict[str, AppealState] = {}
        self.routing: dict[str, dict] = {}
        self.orders: dict[str, WorkOrder] = {}
        self.reasons: dict[str, list[str]] = {}
        self.deadlines: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        self.levels: dict[str, str] = {}
        self.locked: list[str] = []

    async def add_new(self, appeals):
        new = set()
        for appeal, routing in appeals:
            if appeal.appeal_id not in self.appeals:
                self.appeals[appeal.appeal_id] = appeal
                self.routing[appeal.appeal_id] = routing
                new.add(appeal.appeal_id)
        return new

    async def lock(self, appeal_id):
        self.locked.append(appeal_id)
        return self.appeals.get(appeal_id)

    async def appeal_of_order(self, order_id):
        order = self.orders.get(order_id)
        return order.appeal_id if order else None

    async def order(self, order_id):
        return self.orders.get(order_id)

    async def orders_of(self, appeal_id):
        return sorted((o for o in self.orders.values() if o.appeal_id == appeal_id), key=lambda o: o.order_id)

    async def rated_order(self, appeal_id):
        leads = [o for o in await self.orders_of(appeal_id) if o.role.value == "lead"]
        return leads[-1] if leads else None

    async def save(self, appeal, orders, reasons=None):
        if appeal is not None:
            self.appeals[appeal.appeal_id] = appeal
        for o in orders:
            self.orders[o.order_id] = o
            if reasons and o.order_id in reasons:
                self.reasons[o.order_id] = reasons[o.order_id]

    async def record_deadlines(self, deadlines):
        for order_id, clock, due_at, set_at in deadlines:
            kept = self.deadlines.get((order_id, clock))
            if kept is None or kept[1] <= set_at:
                self.deadlines[(order_id, clock)] = (due_at, set_at)

    async def record_escalations(self, levels):
        self.levels.update(dict(levels))

    async def awaiting_rating_since(self, cutoff):
        return [o.appeal_id for o in self.orders.values()
                if o.status == OrderStatus.replied and o.role.value == "lead" and o.replied_at < cutoff]


class FakeFollowers:
    """``FollowerRepository`` in memory (likely duplicates that follow their master)."""

    def __init__(self, appeals: FakeAppeals) -> None:
        self.appeals = appeals
        self.rows: dict[str, Follower] = {}

    async def add(self, followers):
        for f in followers:
            kept = self.rows.get(f.appeal_id)
            self.rows[f.appeal_id] = dataclasses.replace(kept, registration=kept.registration or f.registration) \
                if kept else f

    async def split_before(self, appeal_ids):
        return {a for a in appeal_ids if a in self.rows and self.rows[a].split_at is not None}

    async def lock(self, appeal_id):
        return self.rows.get(appeal_id)

    async def split(self, appeal_id, master_appeal_id, at):
        kept = self.rows.get(appeal_id)
        if kept is not None and kept.split_at is not None:
            return False
        self.rows[appeal_id] = dataclasses.replace(kept, split_at=at) if kept else \
            Follower(appeal_id, master_appeal_id, split_at=at)
        return True

    async def of_master(self, master_appeal_id):
        return sorted(a for a, f in self.rows.items() if f.master_appeal_id == master_appeal_id and f.follows)

    async def mark_replied(self, appeal_id, order_id, at):
        self.rows[appeal_id] = dataclasses.replace(self.rows[appeal_id], replied_order_id=order_id, replied_at=at)

    async def awaiting_rating_since(self, cutoff):
        return [a for a, f in self.rows.items() if f.follows and f.replied_at and f.replied_at < cutoff
                and self.appeals.appeals[a].status.value == "following"]

    async def keep_routing(self, appeal_id, routing):
        self.appeals.routing[appeal_id] = routing


class FakeDispatchUnitOfWork(FakeUnitOfWork):
    """The fake unit of work with dispatch's declarations and one repository that outlives each transaction."""

    def __init__(self, appeals: FakeAppeals | None = None) -> None:
        super().__init__("dispatch", publishes=use_cases.PUBLISHES)
        self.store = appeals or FakeAppeals()
        self.routing = FakeRouting()
        self.followers = FakeFollowers(self.store)

    def open_repositories(self, conn) -> None:  # noqa: ARG002
        self.appeals = self.store


def registered(content: str, appeal_id: str = "AP9", hint: str | None = None) -> AppealRegistered:
    return AppealRegistered(
        event_id=f"ev-{appeal_id}", occurred_at=NOW, appeal_id=appeal_id, source_ref=f"hotline:{appeal_id}",
        correlation_id=f"corr-{appeal_id}", channel=Channel.hotline, source_id=appeal_id,
        enterprise=Party(name="成都金科达铝业有限公司"), contact=Party(name="王洪", phone="13812345678"),
        content=content, category_hint=hint, kind=AppealKind.appeal, received_at=NOW - timedelta(hours=1),
    )


async def started(uow: FakeDispatchUnitOfWork, appeal_id: str = "AP9") -> list[str]:
    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(CASE_D, appeal_id, "水电气保障")], NOW)
    return [o.order_id for o in uow.published(s.ORDER_DISPATCHED)]


async def act(uow: FakeDispatchUnitOfWork, unit: str, command, now: datetime = NOW) -> use_cases.ActionResult:
    async with uow:
        return await use_cases.act(uow, district(), unit, command, now, correlation_id="msg-1")


def staged_once(uow: FakeDispatchUnitOfWork) -> tuple[str, object]:
    assert len(uow.committed) == 1, uow.committed
    return uow.committed[0]


# --- starting appeals -----------------------------------------------------------------------


async def test_a_registered_appeal_is_dispatched_once_whatever_the_number_of_deliveries():
    uow = FakeDispatchUnitOfWork()
    orders = await started(uow)
    assert orders == ["AP9-W01", "AP9-W02", "AP9-W03"]  # the lead order for the town, two co-handling orders
    lead = uow.published(s.ORDER_DISPATCHED)[0]
    assert (lead.unit_code, lead.role) == (TOWN, "lead")
    assert isinstance(lead.policy, OrderPolicy) and lead.policy.lead_unit == LEAD
    assert uow.store.reasons["AP9-W01"] == lead.reasons and uow.store.routing["AP9"]["lead"] == TOWN

    async with uow:  # the same appeal again (a republished event) and a new one in one batch
        ids = await use_cases.start_appeals(uow, district(), [registered(CASE_D, "AP9", "水电气保障"),
                                                              registered(UNCLEAR, "AP10")], NOW)
    assert ids == ["AP10"]
    assert [e.appeal_id for e in uow.published()[3:]] == ["AP10"]
    assert uow.published(s.APPEAL_QUEUED)[0].appeal_id == "AP10"


# --- acting -------------------------------------------------------------------------------------


async def test_the_holding_unit_signs_and_a_repeated_action_id_does_nothing_twice():
    uow = FakeDispatchUnitOfWork()
    await started(uow)
    uow.committed.clear()
    sign = SignFor(action_id="A-1", order_id="AP9-W01", actor="张伟")
    result = await act(uow, TOWN, sign)
    assert result.accepted and not result.duplicate and result.subjects == (s.ORDER_SIGNED,)
    subject, event = staged_once(uow)
    assert subject == s.ORDER_SIGNED and event.actor == "张伟" and event.correlation_id == "msg-1"
    assert uow.store.orders["AP9-W01"].status == OrderStatus.signed
    assert ("dispatch-actions", f"{TOWN}:A-1") in uow.handled

    again = await act(uow, TOWN, sign, NOW + timedelta(minutes=1))
    assert again.accepted and again.duplicate
    assert len(uow.committed) == 1  # nothing staged the second time
    assert uow.store.orders["AP9-W01"].signed_at == NOW


async def test_a_refusal_changes_nothing_and_its_rejection_names_the_rule():
    uow = FakeDispatchUnitOfWork()
    await started(uow)
    uow.committed.clear()
    before = dict(uow.store.orders)
    result = await act(uow, "traffic_police", SignFor(action_id="A-2", order_id="AP9-W01", actor="李四"))
    assert (result.accepted, result.reason, result.rule) == (False, "not_your_order", "OrderMustBeHeldByActingUnit")
    subject, rejected = staged_once(uow)
    assert subject == s.ORDER_REJECTED and isinstance(rejected, OrderRejected)
    assert (rejected.action, rejected.unit_code, rejected.order_id, rejected.appeal_id, rejected.action_id) == (
        "sign", "traffic_police", "AP9-W01", "AP9", "A-2")
    assert rejected.rule == "OrderMustBeHeldByActingUnit" and "黄水镇" in rejected.detail
    assert uow.store.orders == before


async def test_an_unknown_order_is_refused_by_the_rule_that_orders_must_exist():
    uow = FakeDispatchUnitOfWork()
    result = await act(uow, TOWN, Reply(action_id="A-3", order_id="NOPE", actor="张伟", reply="已处理", resolved=True))
    assert (result.reason, result.rule, result.detail) == ("unknown_order", "OrderMustExist", "no such work order")
    _, rejected = staged_once(uow)
    assert rejected.reason == "unknown_order" and rejected.appeal_id is None
    result = await act(uow, LEAD, DispatchByHand(action_id="A-4", actor="王科长", appeal_id="AP404",
                                                 unit_code="energy_office"))
    assert (result.reason, result.rule, result.detail) == ("unknown_order", "OrderMustExist", "no such appeal")


async def test_the_lead_unit_dispatches_a_queued_appeal_by_hand():
    uow = FakeDispatchUnitOfWork()
    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(UNCLEAR, "AP10")], NOW)
    uow.committed.clear()
    result = await act(uow, LEAD, DispatchByHand(action_id="D-1", actor="王科长", appeal_id="AP10",
                                                 unit_code="economy_bureau", co_units=["energy_office"]))
    assert result.subjects == (s.ORDER_DISPATCHED, s.ORDER_DISPATCHED)
    assert [(o.unit_code, o.role) for o in uow.published(s.ORDER_DISPATCHED)] == [
        ("economy_bureau", "lead"), ("energy_office", "co")]
    assert uow.store.appeals["AP10"].status.value == "in_progress"


async def test_a_satisfied_rating_closes_the_appeal_and_its_co_handling_orders():
    uow = FakeDispatchUnitOfWork()
    await started(uow)
    await act(uow, TOWN, SignFor(action_id="A-1", order_id="AP9-W01", actor="张伟"))
    await act(uow, TOWN, Reply(action_id="A-2", order_id="AP9-W01", actor="张伟", reply="已协调供电", resolved=True))
    uow.committed.clear()
    async with uow:
        result = await use_cases.rate(uow, district(), Feedback(feedback_id="F-1", appeal_id="AP9", rating="satisfied",
                                                                via="sms"), NOW)
    assert result.subjects == (s.APPEAL_CLOSED,)
    _, closed = staged_once(uow)
    assert closed.outcome == "satisfied" and closed.actor == "sms"
    assert {o.status for o in uow.store.orders.values()} == {OrderStatus.closed}
    assert ("dispatch-actions", "enterprise:F-1") in uow.handled


async def test_an_action_that_fails_inside_the_transaction_leaves_the_inbox_as_it_was():
    uow = FakeDispatchUnitOfWork()
    await started(uow)

    async def broken_save(*args, **kwargs):
        raise RuntimeError("database gone")

    uow.store.save = broken_save
    with pytest.raises(RuntimeError):
        await act(uow, TOWN, SignFor(action_id="A-9", order_id="AP9-W01", actor="张伟"))
    assert ("dispatch-actions", f"{TOWN}:A-9") not in uow.handled and uow.rollbacks == 1


# --- invalid actions ----------------------------------------------------------------------------


async def test_an_invalid_action_is_rejected_once_with_its_field_errors():
    uow = FakeDispatchUnitOfWork()
    command, errors = UnitAction(action_id="A-5", order_id="AP9-W01", actor="张伟").command("extend")
    assert command is None and {e.field for e in errors} == {"days", "reason"}
    async with uow:
        first = await use_cases.refuse_invalid(uow, unit_code=TOWN, action="extend", key="ct.in.order.x.extend#7",
                                               errors=errors, action_id="A-5", order_id="AP9-W01", now=NOW)
    async with uow:
        second = await use_cases.refuse_invalid(uow, unit_code=TOWN, action="extend", key="ct.in.order.x.extend#7",
                                                errors=errors, action_id="A-5", order_id="AP9-W01", now=NOW)
    assert (first, second) == (True, False)
    subject, rejected = staged_once(uow)
    assert subject == s.ORDER_REJECTED
    assert (rejected.reason, rejected.rule) == ("invalid", "ActionMustBeWellFormed")
    assert {e.field for e in rejected.errors} == {"days", "reason"} and "days: Field required" in rejected.detail


async def test_an_extension_command_carries_exactly_its_fields():
    command, errors = UnitAction(action_id="A-6", order_id="AP9-W01", actor="张伟", days=3, reason="需协调",
                                 reply="ignored").command("extend")
    assert errors == [] and command == RequestExtension(action_id="A-6", order_id="AP9-W01", actor="张伟", days=3,
                                                        reason="需协调")
    _, errors = UnitAction(action_id="A-6", order_id="AP9-W01", actor="张伟").command("approve")
    assert errors == [FieldError(field="action", message="unknown action 'approve'")]


async def test_an_undeclared_publication_is_refused():
    uow = FakeUnitOfWork("dispatch", publishes=[s.ORDER_SIGNED])
    with pytest.raises(UndeclaredPublication):
        uow.publish(s.ORDER_REJECTED, OrderRejected(occurred_at=NOW, action="sign", unit_code=TOWN, reason="invalid"))


# --- what escalation tells us, and the not-rated sweep ----------------------------------------------


async def test_deadlines_and_escalations_are_noted_from_their_models():
    uow = FakeDispatchUnitOfWork()
    newer = DeadlineSet(occurred_at=NOW, appeal_id="AP9", order_id="AP9-W01", unit_code=TOWN, clock="handling",
                        due_at=NOW + timedelta(days=12))
    older = newer.model_copy(update={"occurred_at": NOW - timedelta(minutes=5), "due_at": NOW + timedelta(days=5)})
    async with uow:
        await use_cases.note_deadlines(uow, [newer, older])
        await use_cases.note_escalations(uow, [AppealEscalated(
            occurred_at=NOW, appeal_id="AP9", order_id="AP9-W01", unit_code=TOWN, level="overdue", reason="late")])
    assert uow.store.deadlines[("AP9-W01", "handling")] == (newer.due_at, newer.occurred_at)
    assert uow.store.levels == {"AP9-W01": "overdue"}
    assert uow.committed == []


async def test_a_reply_nobody_rates_in_time_closes_as_not_rated_once():
    uow = FakeDispatchUnitOfWork()
    await started(uow)
    await act(uow, TOWN, SignFor(action_id="A-1", order_id="AP9-W01", actor="张伟"))
    await act(uow, TOWN, Reply(action_id="A-2", order_id="AP9-W01", actor="张伟", reply="已协调", resolved=True))
    uow.committed.clear()
    wait = timedelta(days=10)
    assert await use_cases.close_unrated_appeals(lambda: uow, district(), NOW + timedelta(days=9), wait) == []
    assert await use_cases.close_unrated_appeals(lambda: uow, district(), NOW + timedelta(days=11), wait) == ["AP9"]
    _, closed = staged_once(uow)
    assert closed.outcome == "not_rated" and closed.actor == "system"
    assert await use_cases.close_unrated_appeals(lambda: uow, district(), NOW + timedelta(days=12), wait) == []
    assert len(uow.committed) == 1


def test_the_fake_repository_has_the_real_ones_methods():
    from services.dispatch.unit_of_work import AppealRepository

    public = {n for n in vars(AppealRepository) if not n.startswith("_")} - {"list_orders", "queued"}
    assert public <= set(vars(FakeAppeals)), public - set(vars(FakeAppeals))


