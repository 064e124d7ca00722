"""The routing model on top of the rules: deterministic, explained, learning from corrections, versioned.

Pure tests of ``text_model.py`` and of ``route`` with a suggestion, then the
service layer on a fake unit of work: a correcting action stores one labelled
example, once per action id, and the model refreshes from it.
"""

from __future__ import annotations

from functools import cache

import pytest

from services.dispatch import use_cases
from services.dispatch.domain import text_model
from services.dispatch.domain.routing import RoutingInput, route
from services.dispatch.domain.text_model import LabelledExample, model_version, train, training_set
from shared.contracts import subjects as s
from shared.contracts.inbound import DispatchByHand, Redispatch
from shared.district import District, load_district
from tests.unit.test_dispatch_service_layer import LEAD, NOW, FakeDispatchUnitOfWork, registered
from tools.seed import seed

# A kind of appeal no example and no rule speaks of: only a correction can teach it.
NEW_KIND = "我们公司的无人机航拍测绘作业需要申请低空飞行空域，不知道找哪个部门报备。"
SIMILAR = "公司计划开展无人机航拍测绘，想申请低空飞行空域报备，请问怎么办理。"


@cache
def district() -> District:
    return load_district()


@cache
def base_model():
    d = district()
    return train(training_set(d, []), model_version(d, 0))


def model_with(*corrections: LabelledExample):
    d = district()
    stored = [LabelledExample(c.content, c.unit_code, "dispatch", i + 1, c.appeal_id or f"AP{i}")
              for i, c in enumerate(corrections)]
    return train(training_set(d, stored), model_version(d, len(stored)))


def decide(content: str, model, **routing) -> object:
    suggestion = model.suggest([content])[0] if model else None
    return route(district(), RoutingInput(content=content, **routing), suggestion)


# --- the model ----------------------------------------------------------------------------------------


def test_training_is_deterministic():
    contents = [NEW_KIND, SIMILAR, seed()["other_demands_heard"][0]["content"]]
    first = base_model().suggest(contents)
    again = train(training_set(district(), []), "again", reuse=False).suggest(contents)
    assert [s.probabilities for s in first] == [s.probabilities for s in again]


def test_a_batch_is_scored_at_once_in_order():
    contents = [NEW_KIND, SIMILAR]
    batch = base_model().suggest(contents)
    one_by_one = [base_model().suggest([c])[0] for c in contents]
    for together, alone in zip(batch, one_by_one, strict=True):
        assert together.probabilities == pytest.approx(alone.probabilities)
    assert all(abs(sum(s.probabilities.values()) - 1) < 1e-9 for s in batch)


def test_too_few_units_train_no_model():
    assert train([LabelledExample("一二三四五", "tax_bureau")], "v") is None


# --- the version --------------------------------------------------------------------------------------


def test_the_version_changes_when_an_example_is_added_and_not_otherwise():
    d = district()
    assert model_version(d, 0) == model_version(load_district(), 0)
    assert model_version(d, 3) == model_version(d, 3)
    assert model_version(d, 4) != model_version(d, 3)
    more = d.model_copy(update={"units": [u.model_copy(update={"examples": [*u.examples, NEW_KIND]})
                                          if u.unit_code == "planning_bureau" else u for u in d.units]})
    assert model_version(more, 3) != model_version(d, 3)
    assert model_version(d, 3).endswith("-3")


def test_a_later_correction_of_the_same_appeal_supersedes_the_earlier_one():
    stored = [LabelledExample(NEW_KIND, "tax_bureau", "dispatch", 1, "AP1"),
              LabelledExample(NEW_KIND, "planning_bureau", "redispatch", 2, "AP1"),
              LabelledExample(SIMILAR, "retired_unit", "dispatch", 3, "AP2")]
    learned = training_set(district(), stored)[len(text_model.config_examples(district())):]
    assert [(e.unit_code, e.example_id) for e in learned] == [("planning_bureau", 2)]


# --- the decision -------------------------------------------------------------------------------------


def test_a_correction_changes_the_next_routing_of_a_similar_appeal():
    before = decide(SIMILAR, base_model())
    assert before.queued or before.lead.unit_code != "planning_bureau"
    after = decide(SIMILAR, model_with(LabelledExample(NEW_KIND, "planning_bureau")))
    assert not after.queued and after.lead.unit_code == "planning_bureau"
    assert any(r.startswith("similar to past appeals of 区规划和自然资源局 (p=") for r in after.lead.reasons)
    assert after.model_version == model_version(district(), 1)


def test_a_low_confidence_appeal_queues_with_three_candidates_and_their_reasons():
    decision = decide("希望政府多关心一下我们企业的发展。", base_model())
    assert decision.queued and decision.lead is None
    top = decision.top(3)
    assert len(top) == 3 and top[0].score >= top[1].score >= top[2].score
    assert top[0].reasons and all(c.reasons for c in top if c.score > 0)
    assert any("similar to past appeals of" in r for c in top for r in c.reasons)


def test_a_proposed_unit_outweighs_a_sure_model():
    model = model_with(*[LabelledExample(NEW_KIND, "tax_bureau", appeal_id=f"AP{i}") for i in range(5)])
    decision = decide(NEW_KIND, model, proposed_unit="区规划和自然资源局")
    assert decision.lead.unit_code == "planning_bureau"


def test_every_published_case_still_routes_to_its_published_units_with_the_model():
    for c in seed()["cases"]:
        decision = decide(c["content"], base_model(), category_hint=c.get("category_hint"))
        assert decision.lead.unit_code == district().find_unit(c["handling_unit"]).unit_code, c["key"]
        assert {u.unit_code for u in decision.co_units} == {district().find_unit(n).unit_code
                                                             for n in c.get("co_units", [])}, c["key"]


def test_without_a_model_the_rules_decide_alone():
    decision = decide(NEW_KIND, None)
    assert decision.model_version is None
    assert not any("similar to" in r for c in decision.candidates for r in c.reasons)


# --- the service layer -----------------------------------------------------------------------------------


async def test_a_queued_appeal_carries_its_candidates_in_the_event_and_the_routing_record():
    uow = FakeDispatchUnitOfWork()
    models = use_cases.RoutingModels(district())
    await models.refresh(lambda: uow)
    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(NEW_KIND, "AP1")], NOW, models.current)
    queued = uow.published(s.APPEAL_QUEUED)[0]
    assert len(queued.candidates) == 3 and queued.candidates[0].reasons
    assert queued.routing_version == models.version
    assert uow.store.routing["AP1"]["candidates"][0]["unit_code"] == queued.candidates[0].unit_code
    assert uow.routing.texts["AP1"] == NEW_KIND


async def test_a_manual_dispatch_stores_one_labelled_example_once_per_action_id():
    uow = FakeDispatchUnitOfWork()
    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(NEW_KIND, "AP1")], NOW)
    command = DispatchByHand(action_id="D1", appeal_id="AP1", actor="王科长", unit_code="planning_bureau")
    for _ in range(2):
        async with uow:
            await use_cases.act(uow, district(), LEAD, command, NOW)
    assert len(uow.published(s.ORDER_DISPATCHED)) == 1
    [(example_id, example)] = uow.routing.examples.values()
    assert (example.content, example.unit_code, example.source, example.appeal_id) == (
        NEW_KIND, "planning_bureau", "dispatch", "AP1")
    assert list(uow.routing.examples) == [f"{LEAD}:D1"] and example_id == 1


async def test_a_redispatch_is_learned_and_the_model_refreshes_to_route_a_similar_appeal_there():
    uow = FakeDispatchUnitOfWork()
    models = use_cases.RoutingModels(district())
    await models.refresh(lambda: uow)
    first_version = models.version
    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(NEW_KIND, "AP1")], NOW, models.current)
        await use_cases.act(uow, district(), LEAD, DispatchByHand(
            action_id="D1", appeal_id="AP1", actor="王科长", unit_code="tax_bureau"), NOW)
    order_id = uow.published(s.ORDER_DISPATCHED)[0].order_id
    async with uow:
        await use_cases.act(uow, district(), LEAD, Redispatch(
            action_id="R1", order_id=order_id, actor="王科长", unit_code="planning_bureau"), NOW)
    assert [e.unit_code for _, e in uow.routing.examples.values()] == ["tax_bureau", "planning_bureau"]
    assert await models.refresh(lambda: uow)
    assert models.version == model_version(district(), 2) != first_version
    assert model_version(district(), 2) in uow.routing.versions
    assert not await models.refresh(lambda: uow)  # nothing new: the same version stays

    async with uow:
        await use_cases.start_appeals(uow, district(), [registered(SIMILAR, "AP2")], NOW, models.current)
    dispatched = uow.published(s.ORDER_DISPATCHED)[-1]
    assert dispatched.appeal_id == "AP2" and dispatched.unit_code == "planning_bureau"
    assert dispatched.routing_version == models.version
    assert uow.routing.routed[dispatched.order_id] == models.version


def test_a_model_trained_on_the_same_examples_is_reused_under_the_version_asked_for():
    examples = [LabelledExample("停电了", "power_supply"), LabelledExample("停水了", "water_supply"),
                LabelledExample("路口拥堵", "traffic_police")]
    first = train(examples, "v-1")
    again = train(list(examples), "v-2")
    assert again.version == "v-2" and first.version == "v-1"
    assert again._classifier is first._classifier  # not trained twice
    fresh = train(examples, "v-3", reuse=False)
    assert fresh._classifier is not first._classifier
    assert fresh.suggest(["停电"])[0].probabilities == first.suggest(["停电"])[0].probabilities
    other = train([*examples, LabelledExample("燃气泄漏", "gas_supply")], "v-4")
    assert other._classifier is not first._classifier and "gas_supply" in other.units
