"""Routing (派单): the published cases go where the programme sent them; unclear appeals wait for a person."""

from __future__ import annotations

from functools import cache

import pytest

from services.dispatch.domain.routing import (
    RoutingInput,
    known_answer,
    parse_proposed_units,
    route,
)
from shared.contracts.common import AppealKind
from shared.district import District, load_district
from tools.seed import case, seed


@cache
def district() -> District:
    return load_district()


def code_of(name: str) -> str:
    unit = district().find_unit(name)
    assert unit is not None, f"{name} is not configured"
    return unit.unit_code


def as_input(c: dict, with_proposal: bool) -> RoutingInput:
    return RoutingInput(
        content=c["content"], category_hint=c.get("category_hint"),
        proposed_unit=c["handling_unit"] if with_proposal else None,
    )


# --- the five published cases ----------------------------------------------------------


@pytest.mark.parametrize("with_proposal", [False, True], ids=["content_only", "with_event_proposal"])
def test_case_a_goes_to_traffic_police(with_proposal):
    decision = route(district(), as_input(case("A"), with_proposal))
    assert not decision.queued
    assert decision.lead.unit_code == "traffic_police"
    assert decision.co_units == ()
    assert decision.category.name == "交通出行"


@pytest.mark.parametrize("with_proposal", [False, True], ids=["content_only", "with_event_proposal"])
def test_case_b_goes_to_the_airport_services_committee(with_proposal):
    decision = route(district(), as_input(case("B"), with_proposal))
    assert not decision.queued
    assert decision.lead.unit_code == "airport_services"
    assert decision.co_units == ()
    assert decision.category.name == "商圈建设"


@pytest.mark.parametrize("with_proposal", [False, True], ids=["content_only", "with_event_proposal"])
def test_case_c_goes_to_sanitation(with_proposal):
    decision = route(district(), as_input(case("C"), with_proposal))
    assert not decision.queued
    assert decision.lead.unit_code == "sanitation"
    assert decision.co_units == ()
    assert decision.category.name == "市容环卫"


def test_case_d_goes_to_huangshui_town_with_energy_office_and_power_supply():
    d = case("D")
    decision = route(district(), RoutingInput(content=d["content"], category_hint=d["category_hint"]))
    assert not decision.queued
    assert decision.lead.unit_code == "huangshui_town"
    assert {c.unit_code for c in decision.co_units} == {"energy_office", "power_supply"}
    assert decision.category.name == "水电气保障"


def test_case_d_needs_no_category_hint_to_find_the_town_and_its_co_handlers():
    decision = route(district(), RoutingInput(content=case("D")["content"]))
    assert decision.lead.unit_code == "huangshui_town"
    assert {c.unit_code for c in decision.co_units} == {"energy_office", "power_supply"}


def test_case_d_the_area_makes_the_town_lead_over_the_utilities():
    decision = route(district(), RoutingInput(content=case("D")["content"], category_hint="水电气保障"))
    assert any(r == "area 新鑫再生资源市场 → 黄水镇" for r in decision.lead.reasons)
    energy = next(c for c in decision.co_units if c.unit_code == "energy_office")
    assert {"用电", "停电"} <= set(energy.matched)


@pytest.mark.parametrize("with_proposal", [False, True], ids=["content_only", "with_event_proposal"])
def test_case_e_goes_to_the_human_resources_bureau(with_proposal):
    decision = route(district(), as_input(case("E"), with_proposal))
    assert not decision.queued
    assert decision.lead.unit_code == "hr_bureau"
    assert decision.co_units == ()
    assert decision.category.name == "人才招聘"


def test_every_published_case_routes_to_its_published_units():
    for c in seed()["cases"]:
        proposals = [False] if c["channel"] == "hotline" else [False, True]
        for with_proposal in proposals:
            decision = route(district(), as_input(c, with_proposal))
            assert decision.lead.unit_code == code_of(c["handling_unit"]), c["key"]
            assert {u.unit_code for u in decision.co_units} == {code_of(n) for n in c.get("co_units", [])}, c["key"]


# --- reasons ------------------------------------------------------------------------------------


def test_reasons_name_the_matched_keywords_and_the_unit():
    decision = route(district(), as_input(case("A"), with_proposal=False))
    assert "matched 左转车道, 路口, 通行, 拥堵, 乱停乱放 → 区公安分局交警大队" in decision.lead.reasons
    assert "category 交通出行 defaults to 区公安分局交警大队" in decision.lead.reasons
    assert decision.reasons[0].startswith("lead 区公安分局交警大队 (7.0); next ")
    assert "左转" not in decision.lead.matched  # counted once, as 左转车道


def test_reasons_say_the_coffee_event_proposed_the_unit():
    decision = route(district(), as_input(case("A"), with_proposal=True))
    assert "proposed at the coffee event → 区公安分局交警大队" in decision.lead.reasons
    assert decision.lead.score == pytest.approx(13.0)


def test_every_handling_unit_is_scored_but_never_the_supervision_office():
    decision = route(district(), as_input(case("C"), with_proposal=False))
    codes = [c.unit_code for c in decision.candidates]
    assert len(codes) == len(district().units) - 1
    assert "supervision_office" not in codes
    scores = [c.score for c in decision.candidates]
    assert scores == sorted(scores, reverse=True)


# --- the manual queue --------------------------------------------------------------------------


def test_appeal_matching_nothing_waits_in_the_manual_queue():
    demand = seed()["other_demands_heard"][0]["content"]  # 数据结算中心和研发中心
    decision = route(district(), RoutingInput(content=demand))
    assert decision.queued
    assert decision.lead is None and decision.co_units == ()
    assert decision.reasons[0] == "no unit scored at least 2.0 (best: none matched)"
    assert decision.category.name == "其他"


def test_vague_demand_about_traffic_and_housing_waits_in_the_manual_queue():
    demand = seed()["other_demands_heard"][1]["content"]  # 交通问题和住房问题影响了企业对人才的吸引力
    decision = route(district(), RoutingInput(content=demand))
    assert decision.queued
    assert decision.reasons[0].startswith("no unit scored at least 2.0 (best: ")
    assert any(r.startswith("candidates: ") for r in decision.reasons)


def test_appeal_split_evenly_between_two_units_waits_in_the_manual_queue():
    decision = route(district(), RoutingInput(content="园区门口垃圾没人清运，车辆违停拥堵。"))
    assert decision.queued
    assert "are too close: margin 0.0 < 1.0" in decision.reasons[0]
    assert {c.unit_code for c in decision.top(2)} == {"sanitation", "traffic_police"}


def test_proposal_contradicting_the_content_waits_in_the_manual_queue():
    decision = route(district(), RoutingInput(content=case("A")["content"], category_hint="交通出行",
                                              proposed_unit="区交通运输局"))
    assert decision.queued
    assert "too close" in decision.reasons[0]


def test_queued_appeal_keeps_its_category_and_deadline():
    # three units at 2.0: sanitation and traffic police from the content, the tax bureau from the category
    decision = route(district(), RoutingInput(content="园区门口垃圾没人清运，车辆违停拥堵。", category_hint="税务",
                                              proposed_deadline_days=3))
    assert decision.queued
    assert decision.category.name == "税务"
    assert decision.deadline_days == 3 and decision.sign_hours == district().category("税务").sign_hours


# --- proposals, co-handlers, areas ---------------------------------------------------------------


@pytest.mark.parametrize("proposed", ["hr_bureau", "区人社局", "人社局"])
def test_proposed_unit_may_be_a_code_a_name_or_an_alias(proposed):
    decision = route(district(), RoutingInput(content="希望帮助对接高校资源。", proposed_unit=proposed))
    assert decision.lead.unit_code == "hr_bureau"
    assert "proposed at the coffee event → 区人社局" in decision.lead.reasons


def test_proposal_naming_co_handlers_makes_them_co_units():
    decision = route(district(), RoutingInput(
        content="厂区周边配套不足，希望协调解决。", proposed_unit="黄水镇牵头，区新科局能源办、供电部门配合"))
    assert decision.lead.unit_code == "huangshui_town"
    assert [c.unit_code for c in decision.co_units] == ["energy_office", "power_supply"]
    assert "named as co-handler → 区新科局能源办" in decision.co_units[0].reasons


def test_proposal_text_is_split_into_lead_and_co_handlers():
    d = district()
    lead, co, unknown = parse_proposed_units(d, "区新科局能源办（协办）、黄水镇（主办）")
    assert lead.unit_code == "huangshui_town" and [u.unit_code for u in co] == ["energy_office"] and unknown == []
    lead, co, unknown = parse_proposed_units(d, "黄水镇、能源办、不存在的局")
    assert lead.unit_code == "huangshui_town" and [u.unit_code for u in co] == ["energy_office"]
    assert unknown == ["不存在的局"]


def test_unknown_proposed_unit_is_noted_and_the_content_decides():
    decision = route(district(), RoutingInput(content=case("C")["content"], category_hint="市容环卫",
                                              proposed_unit="区垃圾办"))
    assert decision.lead.unit_code == "sanitation"
    assert any("'区垃圾办' is not a unit of" in r for r in decision.reasons)


def test_explicit_co_units_co_handle_whatever_their_score():
    decision = route(district(), RoutingInput(content=case("E")["content"], category_hint="人才招聘",
                                              co_units=("housing_bureau", "区人社局")))
    assert decision.lead.unit_code == "hr_bureau"
    assert [c.unit_code for c in decision.co_units] == ["housing_bureau"]  # never the lead itself


def test_address_in_a_town_does_not_take_a_traffic_problem_from_the_police():
    decision = route(district(), RoutingInput(content="厂门口路口红绿灯坏了，车辆拥堵。", category_hint="交通出行",
                                              address="黄水镇工业园区"))
    assert decision.lead.unit_code == "traffic_police"
    town = next(c for c in decision.candidates if c.unit_code == "huangshui_town")
    assert town.score == 0  # a place alone says where, not who
    assert decision.co_units == ()


def test_a_place_alone_gives_a_town_nothing_its_local_matter_does():
    """黄水镇's power lines are the power company's; a dispute with 黄水镇's villagers is the town's."""
    power = route(district(), RoutingInput(content="黄水镇工业区的线路老化，每逢雷雨天就断电跳闸。"))
    assert power.lead.unit_code == "power_supply"
    town = next(c for c in power.candidates if c.unit_code == "huangshui_town")
    assert town.score == 0  # neither as an area nor as a unit named in the appeal
    local = route(district(), RoutingInput(content="黄水镇的村民在我们厂房门口堵路，请镇上协调。"))
    assert local.lead.unit_code == "huangshui_town"
    assert any(r.startswith("area 黄水镇") for r in local.lead.reasons)


def test_a_towns_keywords_count_only_on_its_own_ground():
    decision = route(district(), RoutingInput(content="商铺整改导致停电停水，望协调。"))
    town = next(c for c in decision.candidates if c.unit_code == "huangshui_town")
    assert town.score == 0


def test_unit_named_in_the_content_scores():
    decision = route(district(), RoutingInput(content="希望区经信局帮忙。"))
    economy = next(c for c in decision.candidates if c.unit_code == "economy_bureau")
    assert economy.reasons == ("named in the appeal: 区经信局 → 区经信局",)  # once, not again as 经信局
    assert economy.score == pytest.approx(2.0)


# --- category and deadlines ------------------------------------------------------------------------


def test_deadline_comes_from_the_event_proposal_else_from_the_category():
    d = district()
    c = case("A")
    proposed = route(d, RoutingInput(content=c["content"], category_hint="交通出行", proposed_deadline_days=2))
    assert proposed.deadline_days == 2
    plain = route(d, RoutingInput(content=c["content"], category_hint="交通出行"))
    assert plain.deadline_days == d.category("交通出行").deadline_days
    assert plain.sign_hours == d.category("交通出行").sign_hours


def test_category_is_inferred_from_the_lead_unit_when_there_is_no_hint():
    decision = route(district(), RoutingInput(content=case("A")["content"]))
    assert decision.lead.unit_code == "traffic_police"
    assert decision.category.name == "交通出行"


def test_unknown_category_hint_falls_back_to_other():
    decision = route(district(), RoutingInput(content=case("D")["content"], category_hint="不存在的类别"))
    assert decision.lead.unit_code == "huangshui_town"
    assert decision.category.name == "其他"


def test_category_hint_may_be_a_code_or_an_alias():
    assert route(district(), RoutingInput(content="垃圾", category_hint="sanitation")).category.name == "市容环卫"
    assert route(district(), RoutingInput(content="垃圾", category_hint="环境卫生")).category.name == "市容环卫"


# --- consultations answered at once -------------------------------------------------------------------


def test_consultation_about_a_business_licence_gets_the_one_window_answer():
    answer = known_answer(district(), "请问营业执照在哪里办理？需要什么材料？", AppealKind.consultation)
    assert answer is not None and "一窗通办" in answer and "区行政审批局" in answer


def test_known_answer_needs_every_keyword():
    assert known_answer(district(), "营业执照丢了怎么办", AppealKind.consultation) is None


def test_only_a_consultation_gets_a_known_answer():
    assert known_answer(district(), "营业执照办理太慢，希望改进。", AppealKind.appeal) is None
    assert known_answer(district(), "营业执照办理太慢，希望改进。", "complaint") is None
    assert known_answer(district(), "营业执照怎么办理", "consultation") is not None


def test_the_most_specific_known_answer_wins():
    d = district()
    both = known_answer(d, "企业开办时营业执照如何办理", AppealKind.consultation)
    assert both == next(a.answer for a in d.known_answers if a.keywords == ["营业执照", "办理"])
