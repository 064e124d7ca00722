"""Duplicates (重复诉求并单): the similarity on realistic pairs, the rule, and the use cases of intake and dispatch on fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatch import use_cases as dispatch_use_cases
from services.dispatch.domain import AppealStatus, OrderStatus
from services.dispatch.unit_of_work import FollowerRepository
from services.intake import use_cases as intake_use_cases
from services.intake.duplicates import Candidate, DuplicateSettings, find_master, match_batch, similarity
from services.intake.use_cases import Received
from shared import clock
from shared.contracts import AppealMerged, AppealRegistered, AppealSplit, HotlineCall, subjects
from shared.contracts.inbound import Feedback, Reply, SignFor
from tests.unit.test_dispatch_service_layer import CASE_D, NOW, TOWN, FakeDispatchUnitOfWork, district, registered
from tests.unit.test_intake_service_layer import FakeIntakeUnitOfWork

# --- realistic pairs: the same matter called in twice, and different matters of one enterprise ------------------

NEAR = [
    ("我公司门口的路灯坏了一个多月了，晚上员工下班很不安全，请尽快修复。",
     "公司门口路灯坏了一个多月还没人修，晚上员工下班太黑不安全，麻烦尽快修一下。"),
    ("园区东门外的雨水管道堵塞，一下雨厂区门口就积水，货车进不来。",
     "上周反映过东门外雨水管道堵了，昨天下雨厂区门口又积水，货车进不来，请尽快疏通。"),
    ("我司申请的高新技术企业认定奖励资金至今没有到账，请问什么时候发放？",
     "你好，我们公司高新技术企业认定的奖励资金到现在还没到账，想问一下什么时候能发放。"),
    ("厂房旁边的餐饮店油烟直排，气味很大，影响我们车间员工工作。",
     "隔壁餐饮店油烟直排到我们厂房，车间里气味很大，员工没法正常工作，请来查一下。"),
    ("公司办理排污许可证变更，提交材料两周了还没有审批结果。",
     "排污许可证变更材料提交两周多了，审批一直没有结果，影响我们新生产线投产。"),
    ("企业门前道路施工围挡占了一半车道，早晚高峰员工车辆进出困难。",
     "门口道路施工围挡占道，高峰时段员工车辆进出很困难，能否调整一下围挡。"),
    ("我们公司的稳岗补贴申请显示审核通过，但钱一直没到账。",
     "稳岗补贴申请早就审核通过了，钱到现在都没到账，请帮忙催一下。"),
    ("园区内公交站撤了以后员工上下班没有公交，希望恢复站点。",
     "员工反映园区公交站撤销后上下班很不方便，希望能恢复公交站点。"),
]
DIFFERENT = [  # several on purpose about the same place, the same fund or the same workshop
    ("我公司门口的路灯坏了一个多月了，晚上员工下班很不安全，请尽快修复。",
     "我司申请的高新技术企业认定奖励资金至今没有到账，请问什么时候发放？"),
    ("园区东门外的雨水管道堵塞，一下雨厂区门口就积水，货车进不来。",
     "园区东门外的道路施工围挡占了一半车道，员工车辆进出困难。"),
    ("公司办理排污许可证变更，提交材料两周了还没有审批结果。",
     "公司想了解今年研发费用加计扣除的政策，具体怎么申报。"),
    ("我们公司的稳岗补贴申请显示审核通过，但钱一直没到账。",
     "我们公司的高新技术企业认定奖励资金一直没有到账。"),
    ("厂房旁边的餐饮店油烟直排，气味很大，影响我们车间员工工作。",
     "厂房旁边的空地堆满建筑垃圾，很久没人清理，影响我们车间员工进出。"),
    ("企业门前道路施工围挡占了一半车道，早晚高峰员工车辆进出困难。",
     "企业招聘的外地员工子女入学需要办理哪些手续？"),
    ("园区内公交站撤了以后员工上下班没有公交，希望恢复站点。",
     "园区内的充电桩太少，员工的电动车没地方充电，希望增加一些。"),
    ("公司新建厂房的消防验收已经申请一个月，还没有安排现场检查。",
     "公司新建厂房的不动产登记证办理需要准备哪些材料？"),
]
THRESHOLD = DuplicateSettings().min_similarity


@pytest.mark.parametrize(("a", "b"), NEAR)
def test_the_same_matter_called_in_twice_reaches_the_default_threshold(a, b):
    assert similarity(a, b) >= THRESHOLD


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_matters_of_one_enterprise_stay_below_the_default_threshold(a, b):
    assert similarity(a, b) < THRESHOLD


def test_the_default_threshold_sits_inside_the_gap_with_room_on_both_sides():
    lowest_near = min(similarity(a, b) for a, b in NEAR)
    highest_different = max(similarity(a, b) for a, b in DIFFERENT)
    assert highest_different + 0.05 < THRESHOLD < lowest_near


def test_similarity_is_symmetric_deterministic_and_blind_to_punctuation_and_filler():
    a, b = NEAR[0]
    assert similarity(a, b) == similarity(b, a) == similarity(a, b)
    assert similarity("您好，路灯坏了！", "路灯坏了") == 1.0
    assert similarity("", a) == 0.0


# --- the rule ---------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
USCC = "91510100MA61TEST0X"  # the rule compares codes; it does not validate them


def cand(appeal_id: str, content: str, days: float = 0, **over) -> Candidate:
    values = dict(appeal_id=appeal_id, received_at=T0 + timedelta(days=days), content=content, kind="appeal",
                  enterprise_uscc=USCC, contact_phone="13800000001")
    return Candidate(**{**values, **over})


def test_an_appeal_repeating_an_earlier_one_of_its_enterprise_follows_it():
    a, b = NEAR[0]
    match = find_master(cand("B", b, 3), [cand("A", a)], DuplicateSettings())
    assert match is not None and match.master_appeal_id == "A" and match.similarity == round(similarity(b, a), 3)


@pytest.mark.parametrize(("earlier", "why"), [
    (cand("A", NEAR[0][0], enterprise_uscc="91510100MA61OTHER1"), "another enterprise's credit code"),
    (cand("A", NEAR[0][0], -31), "received before the 30-day window"),
    (cand("A", NEAR[0][0], category="劳动就业"), "another category"),
    (cand("A", NEAR[0][0], kind="consultation"), "a consultation (answered at once)"),
    (cand("A", NEAR[0][0], 5), "received after the new one"),
    (cand("A", DIFFERENT[0][1]), "a different matter"),
])
def test_no_master_when(earlier, why):
    new = cand("B", NEAR[0][1], 1, category="城市管理")
    assert find_master(new, [earlier], DuplicateSettings()) is None, why


def test_without_a_credit_code_the_phone_decides_and_an_unknown_category_does_not_object():
    a, b = NEAR[1]
    earlier = cand("A", a, enterprise_uscc=None, category="城市管理")
    assert find_master(cand("B", b, 1, enterprise_uscc=None), [earlier], DuplicateSettings()) is not None
    other_phone = cand("B", b, 1, enterprise_uscc=None, contact_phone="13900000009")
    assert find_master(other_phone, [earlier], DuplicateSettings()) is None


def test_a_window_of_zero_days_turns_merging_off():
    a, b = NEAR[0]
    assert find_master(cand("B", b, 1), [cand("A", a)], DuplicateSettings(window_days=0)) is None


def test_three_calls_in_one_batch_make_one_master_and_the_chain_is_stored_to_its_root():
    a, b = NEAR[0]
    c = "门口路灯坏了一个多月还没修，晚上员工下班太黑很不安全。"
    found = match_batch([cand("C", c, 2), cand("B", b, 1), cand("A", a)], [], DuplicateSettings())
    assert {k: m.master_appeal_id for k, m in found.items()} == {"B": "A", "C": "A"}


# --- intake: registration and split on a fake unit of work ---------------------------------------------------


@pytest.fixture
def intake_uow():
    clock.set_clock(lambda: datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    yield FakeIntakeUnitOfWork()
    clock.set_clock(None)


def a_call(call_id: str, content: str, minutes: int, phone: str = "13812345678", **over) -> HotlineCall:
    at = datetime(2026, 11, 26, 1, 0, tzinfo=UTC) + timedelta(minutes=minutes)
    return HotlineCall.model_validate({"call_id": call_id, "received_at": at.isoformat(), "caller_phone": phone,
                                       "content": content, "enterprise_name": "成都锦程精密机械有限公司", **over})


async def test_a_repeated_call_is_registered_naming_its_master_with_merged_beside_it(intake_uow):
    a, b = NEAR[0]
    first = await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-1", a, 0))], (),
                                                    DuplicateSettings())
    done = await intake_use_cases.register_appeals(
        intake_uow, [Received(a_call("C-2", b, 30)), Received(a_call("C-3", DIFFERENT[0][1], 31))], (),
        DuplicateSettings())
    master = first.registered[0].appeal_id
    duplicate, other = done.registered
    assert (duplicate.duplicate_of, duplicate.similarity) == (master, round(similarity(b, a), 3))
    assert other.duplicate_of is None
    (merged,) = intake_use_cases_published(intake_uow, subjects.APPEAL_MERGED)
    assert isinstance(merged, AppealMerged) and (merged.appeal_id, merged.master_appeal_id) == (
        duplicate.appeal_id, master)
    assert merged.occurred_at > duplicate.occurred_at  # the timeline ends "merged"
    assert intake_uow.appeals.candidate_queries == 2  # one query per batch, not per message


async def test_a_republished_duplicate_is_merged_once(intake_uow):
    a, b = NEAR[2]
    settings = DuplicateSettings()
    await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-1", a, 0))], (), settings)
    await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-2", b, 5))], (), settings)
    await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-2", b, 5), "retry")], (), settings)
    assert len(intake_use_cases_published(intake_uow, subjects.APPEAL_MERGED)) == 1


async def test_a_split_is_staged_once_and_refused_where_it_does_not_apply(intake_uow):
    a, b = NEAR[3]
    settings = DuplicateSettings()
    master = (await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-1", a, 0))], (),
                                                      settings)).registered[0].appeal_id
    duplicate = (await intake_use_cases.register_appeals(intake_uow, [Received(a_call("C-2", b, 5))], (),
                                                         settings)).registered[0].appeal_id
    done = await intake_use_cases.split_appeal(intake_uow, duplicate, "approval_bureau", "另一件事")
    assert done.outcome == "split" and isinstance(done.event, AppealSplit)
    assert (done.event.master_appeal_id, done.event.actor, done.event.reason) == (master, "approval_bureau", "另一件事")
    again = await intake_use_cases.split_appeal(intake_uow, duplicate, "approval_bureau")
    assert again.outcome == "already_split" and again.event is None
    assert len(intake_use_cases_published(intake_uow, subjects.APPEAL_SPLIT)) == 1
    assert (await intake_use_cases.split_appeal(intake_uow, master, "approval_bureau")).outcome == "not_a_duplicate"
    assert (await intake_use_cases.split_appeal(intake_uow, "CT-NONE", "approval_bureau")).outcome == "not_found"


def intake_use_cases_published(uow, subject: str) -> list:
    return uow.published(subject)


# --- dispatch: a follower on a fake unit of work ------------------------------------------------------------


def follower_of(master: str, appeal_id: str = "AP10", phone: str = "13900001111") -> AppealRegistered:
    event = registered(CASE_D, appeal_id, "水电气保障")
    return event.model_copy(update={"duplicate_of": master, "similarity": 0.41,
                                    "contact": event.contact.model_copy(update={"phone": phone})})


async def start(uow, events, now=NOW) -> list[str]:
    async with uow:
        return await dispatch_use_cases.start_appeals(uow, district(), events, now)


async def act(uow, unit, command, now=NOW):
    async with uow:
        return await dispatch_use_cases.act(uow, district(), unit, command, now)


async def rate(uow, appeal_id, rating, now=NOW):
    async with uow:
        return await dispatch_use_cases.rate(uow, district(), Feedback(
            feedback_id=f"F-{appeal_id}-{rating}", appeal_id=appeal_id, rating=rating, via="sms"), now)


async def replied_master(uow) -> None:
    await start(uow, [registered(CASE_D, "AP9", "水电气保障"), follower_of("AP9")])
    await act(uow, TOWN, SignFor(action_id="S-1", order_id="AP9-W01", actor="张伟"))
    await act(uow, TOWN, Reply(action_id="R-1", order_id="AP9-W01", actor="张伟", reply="已协调供电。", resolved=True))


async def test_a_duplicate_gets_no_order_and_the_masters_reply_reaches_its_own_enterprise_once():
    uow = FakeDispatchUnitOfWork()
    ids = await start(uow, [registered(CASE_D, "AP9", "水电气保障"), follower_of("AP9")])
    assert ids == ["AP9"]
    assert {e.appeal_id for e in uow.published(subjects.ORDER_DISPATCHED)} == {"AP9"}
    assert uow.store.appeals["AP10"].status == AppealStatus.following
    assert await start(uow, [follower_of("AP9")]) == []  # republished: nothing twice
    assert [o for o in uow.store.orders.values() if o.appeal_id == "AP10"] == []

    await act(uow, TOWN, SignFor(action_id="S-1", order_id="AP9-W01", actor="张伟"))
    await act(uow, TOWN, Reply(action_id="R-1", order_id="AP9-W01", actor="张伟", reply="已协调供电。", resolved=True))
    (reached,) = uow.published(subjects.APPEAL_FOLLOWER_REPLIED)
    assert (reached.appeal_id, reached.master_appeal_id, reached.order_id, reached.unit_code) == (
        "AP10", "AP9", "AP9-W01", TOWN)
    assert (reached.reply, reached.contact_phone) == ("已协调供电。", "13900001111")
    # a co-handling unit replying afterwards does not send the same reply again
    co = next(o for o in uow.store.orders.values() if o.appeal_id == "AP9" and o.role.value == "co")
    await act(uow, co.unit_code, SignFor(action_id="S-2", order_id=co.order_id, actor="李"))
    await act(uow, co.unit_code, Reply(action_id="R-2", order_id=co.order_id, actor="李", reply="已配合。", resolved=True))
    assert len(uow.published(subjects.APPEAL_FOLLOWER_REPLIED)) == 1


async def test_a_follower_arriving_after_its_master_was_replied_hears_the_reply_at_once():
    uow = FakeDispatchUnitOfWork()
    await start(uow, [registered(CASE_D, "AP9", "水电气保障")])
    await act(uow, TOWN, SignFor(action_id="S-1", order_id="AP9-W01", actor="张伟"))
    await act(uow, TOWN, Reply(action_id="R-1", order_id="AP9-W01", actor="张伟", reply="已协调供电。", resolved=True))
    await start(uow, [follower_of("AP9")])
    assert [e.appeal_id for e in uow.published(subjects.APPEAL_FOLLOWER_REPLIED)] == ["AP10"]


async def test_a_followers_satisfied_rating_closes_only_it_naming_no_unit():
    uow = FakeDispatchUnitOfWork()
    await replied_master(uow)
    result = await rate(uow, "AP10", "satisfied")
    assert result.accepted
    (closed,) = uow.published(subjects.APPEAL_CLOSED)
    assert (closed.appeal_id, closed.outcome, closed.unit_codes) == ("AP10", "satisfied", [])  # KPIs: the master once
    assert uow.store.appeals["AP9"].status == AppealStatus.in_progress
    assert uow.store.orders["AP9-W01"].status == OrderStatus.replied


async def test_a_followers_unsatisfied_rating_makes_it_its_own_case_at_the_unit_that_replied():
    uow = FakeDispatchUnitOfWork()
    await replied_master(uow)
    await rate(uow, "AP10", "unsatisfied")
    (reopened,) = uow.published(subjects.APPEAL_REOPENED)
    own = [e for e in uow.published(subjects.ORDER_DISPATCHED) if e.appeal_id == "AP10"]
    assert (reopened.appeal_id, reopened.unit_code, reopened.order_id) == ("AP10", TOWN, "AP10-W01")
    assert [(e.order_id, e.unit_code, e.reopen_count) for e in own] == [("AP10-W01", TOWN, 1)]
    assert not uow.followers.rows["AP10"].follows
    assert uow.store.orders["AP9-W01"].status == OrderStatus.replied  # the master is untouched


async def test_a_follower_is_not_rated_before_the_masters_reply_reached_it():
    uow = FakeDispatchUnitOfWork()
    await start(uow, [registered(CASE_D, "AP9", "水电气保障"), follower_of("AP9")])
    result = await rate(uow, "AP10", "satisfied")
    assert (result.accepted, result.rule) == (False, "DuplicateIsRatedAfterItsMastersReply")


async def test_a_split_routes_the_follower_like_a_new_appeal_once_and_even_before_its_registration():
    uow = FakeDispatchUnitOfWork()
    await start(uow, [registered(CASE_D, "AP9", "水电气保障"), follower_of("AP9")])
    split = AppealSplit(occurred_at=NOW, appeal_id="AP10", master_appeal_id="AP9", actor="approval_bureau")
    async with uow:
        assert await dispatch_use_cases.split_appeals(uow, district(), [split, split], NOW) == ["AP10"]
    async with uow:
        assert await dispatch_use_cases.split_appeals(uow, district(), [split], NOW) == []
    own = [e for e in uow.published(subjects.ORDER_DISPATCHED) if e.appeal_id == "AP10"]
    assert own and own[0].order_id == "AP10-W01" and own[0].role == "lead"

    early = FakeDispatchUnitOfWork()  # the split arrives before the registration: the registration routes it
    async with early:
        assert await dispatch_use_cases.split_appeals(early, district(), [split], NOW) == []
    assert await start(early, [follower_of("AP9")]) == ["AP10"]
    assert [e.order_id for e in early.published(subjects.ORDER_DISPATCHED)][0] == "AP10-W01"


async def test_a_follower_nobody_rates_in_time_closes_as_not_rated():
    uow = FakeDispatchUnitOfWork()
    await replied_master(uow)
    closed = await dispatch_use_cases.close_unrated_appeals(lambda: uow, district(), NOW + timedelta(days=8),
                                                            timedelta(days=7))
    assert set(closed) == {"AP9", "AP10"}
    follower_closed = [e for e in uow.published(subjects.APPEAL_CLOSED) if e.appeal_id == "AP10"]
    assert [(e.outcome, e.unit_codes) for e in follower_closed] == [("not_rated", [])]


def test_the_fake_follower_repository_has_the_real_ones_methods():
    def public(cls) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(FollowerRepository) <= public(type(FakeDispatchUnitOfWork().followers))
