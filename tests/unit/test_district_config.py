"""The district's default configuration (shared/district.yaml) and the schema that validates it."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from shared.contracts.common import field_errors, normalize_phone
from shared.district import DEFAULT_PATH, District, UnitKind, load_district
from tools.seed import seed

SEED_UNITS = {
    "区公安分局交警大队": "traffic_police",
    "区临空服务业管委会": "airport_services",
    "区城管局环卫所": "sanitation",
    "区新科局能源办": "energy_office",
    "区人社局": "hr_bureau",
    "黄水镇": "huangshui_town",
    "供电部门": "power_supply",
    "区行政审批局": "approval_bureau",
    "区委区政府督查室": "supervision_office",
}


UNSEEN_PATH = Path(__file__).parents[1] / "data" / "unseen_appeals.yaml"
"""Held-out appeals for measuring routing (never used for training)."""

HELD_OUT = {
    # file: (appeals, how many may be ambiguous, at least this many clear appeals per handling unit)
    "unseen_appeals.yaml": (60, range(10, 21), 1),  # written by the authors of the examples
    "unseen_appeals_new_user.yaml": (80, range(6, 13), 3),  # written without seeing the examples or the rules
}
"""Every held-out set ``coffeetime routing-eval`` measures (``tests/data/unseen_appeals*.yaml``)."""


def raw() -> dict:
    return yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))


def errors_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        District.model_validate(data)
    return [(e.field, e.message) for e in field_errors(info.value)]


def test_default_file_validates_and_names_the_district():
    district = load_district()
    assert district.name == "成都市双流区"
    assert len(district.units) >= 20
    assert district.min_score > 0 and district.min_margin > 0


def test_lead_unit_is_the_approval_bureau_and_supervision_is_the_supervision_office():
    district = load_district()
    assert district.lead_unit.unit_code == "approval_bureau"
    assert district.lead_unit.name == "区行政审批局"
    assert district.supervision_office.unit_code == "supervision_office"
    assert district.supervision_office.name == "区委区政府督查室"


def test_every_unit_of_the_published_cases_is_found_by_its_published_name():
    district = load_district()
    for name, code in SEED_UNITS.items():
        unit = district.find_unit(name)
        assert unit is not None, name
        assert unit.unit_code == code


def test_the_common_units_towns_and_utilities_are_configured():
    district = load_district()
    for name in ["区住建局", "区规划和自然资源局", "区市场监管局", "区税务局", "生态环境局", "区交通运输局",
                 "区经信局", "自来水公司", "燃气公司", "东升街道", "西航港街道", "九江街道", "黄甲街道", "彭镇"]:
        assert district.find_unit(name) is not None, name
    kinds = {u.kind for u in district.units}
    assert {UnitKind.bureau, UnitKind.town, UnitKind.park, UnitKind.utility} <= kinds


def test_every_reference_points_to_something_that_exists():
    district = load_district()
    codes = {u.unit_code for u in district.units}
    for category in district.categories:
        assert category.default_unit is None or category.default_unit in codes
    for rule in district.routing:
        assert rule.unit in codes
        assert rule.keywords or rule.areas or rule.categories
        for name in rule.categories:
            assert district.category(name) is not None
    for leader in district.leaders:
        for name in leader.categories:
            assert district.category(name) is not None


def test_each_unit_token_hash_matches_its_demo_token():
    district = load_district()
    for unit in district.units:
        token = f"token-{unit.unit_code}"
        assert unit.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
        assert unit.token_matches(token)
        assert not unit.token_matches(token + "x")
        other = "hr_bureau" if unit.unit_code == "traffic_police" else "traffic_police"
        assert not unit.token_matches(f"token-{other}")  # one unit's token never opens another's orders


def test_each_unit_has_liaisons_a_head_and_a_placeholder_webhook():
    district = load_district()
    for unit in district.units:
        assert 1 <= len(unit.liaisons) <= 2, unit.unit_code
        assert unit.head is not None
        assert unit.wecom_webhook == f"http://127.0.0.1:9/wecom/{unit.unit_code}"
        for person in [*unit.liaisons, unit.head]:
            assert person.phone and normalize_phone(person.phone) == person.phone
            assert re.fullmatch(r"1[3-9]\d{9}", person.phone)
            assert person.email and person.email.endswith("@example.gov.cn")


def test_phones_are_unique_so_notifications_reach_the_right_person():
    district = load_district()
    phones = [p.phone for u in district.units for p in [*u.liaisons, u.head]]
    phones += [leader.contact.phone for leader in district.leaders]
    assert len(phones) == len(set(phones))


def test_categories_have_deadlines_sign_hours_and_a_fallback_named_other():
    district = load_district()
    for name in ["交通出行", "商圈建设", "市容环卫", "水电气保障", "人才招聘", "政策咨询", "市场监管", "税务",
                 "规划建设", "环境保护", "其他"]:
        category = district.category(name)
        assert category is not None, name
        assert category.deadline_days >= 1 and category.sign_hours > 0
    assert district.category("other").name == "其他"
    assert district.category("traffic").name == "交通出行"
    assert district.category("交通").name == "交通出行"  # alias


def test_district_leaders_are_found_by_category_name_or_code():
    district = load_district()
    assert 2 <= len(district.leaders) <= 3
    assert district.leader_for("交通出行").leader_id == "leader_liu"
    assert district.leader_for("traffic").leader_id == "leader_liu"
    assert district.leader_for("水电气保障").leader_id == "leader_chen"
    assert district.leader_for("税务").leader_id == "leader_zhou"  # the leader for any category
    assert district.leader_for(None).leader_id == "leader_zhou"


def test_known_answers_are_configured_for_consultations():
    district = load_district()
    assert any(set(a.keywords) == {"营业执照", "办理"} and "一窗通办" in a.answer for a in district.known_answers)



# --- example appeals, standard codes and the held-out appeals ----------------------------


def unseen_appeals(name: str = UNSEEN_PATH.name) -> list[dict]:
    return yaml.safe_load((UNSEEN_PATH.parent / name).read_text(encoding="utf-8"))["appeals"]


def all_held_out_appeals() -> list[dict]:
    return [appeal for name in HELD_OUT for appeal in unseen_appeals(name)]


def handling_units(district):
    return [u for u in district.units if u.kind != UnitKind.supervision]


def bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of character bigrams: 1.0 for the same text, about 0.2 for two appeals on one topic."""
    return len(bigrams(a) & bigrams(b)) / len(bigrams(a) | bigrams(b))


def test_every_unit_that_handles_appeals_has_at_least_twelve_examples():
    district = load_district()
    for unit in handling_units(district):
        assert len(unit.examples) >= 12, unit.unit_code
    assert district.lead_unit.examples  # the lead unit handles 政策咨询 and 行政审批 itself
    assert district.supervision_office.examples == []  # it supervises, it is never dispatched to


def test_examples_are_one_or_two_sentences_of_20_to_120_characters():
    for unit in handling_units(load_district()):
        for text in unit.examples:
            assert 20 <= len(text) <= 120, (unit.unit_code, text)
            assert text == text.strip() and "\n" not in text
            assert len(re.findall(r"[。？！]", text)) <= 2, text


def test_no_example_appears_twice_in_the_district():
    examples = [text for unit in load_district().units for text in unit.examples]
    assert len(examples) == len(set(examples))


def test_a_third_of_each_units_examples_share_no_keyword_with_its_rules():
    """So that a model trained on them learns more than the keyword rules already know."""
    district = load_district()
    for unit in handling_units(district):
        keywords = {k for rule in district.routing if rule.unit == unit.unit_code for k in rule.keywords}
        free = [text for text in unit.examples if not any(k in text for k in keywords)]
        assert 3 * len(free) >= len(unit.examples), (unit.unit_code, len(free), len(unit.examples))


def test_examples_and_unseen_appeals_are_not_the_published_cases():
    published = [c["content"] for c in seed()["cases"]] + [d["content"] for d in seed()["other_demands_heard"]]
    ours = [text for unit in load_district().units for text in unit.examples]
    ours += [appeal["content"] for appeal in all_held_out_appeals()]
    for text in ours:
        for case in published:
            assert similarity(text, case) < 0.5, (text, case)


def test_every_category_has_a_unique_standard_code():
    categories = load_district().categories
    codes = [c.standard_code for c in categories]
    assert all(codes), [c.code for c in categories if not c.standard_code]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"\d{2}(\.\d{2})?", code), code  # GB/T 39666 style: level.level


def test_a_bad_standard_code_names_the_field():
    data = raw()
    data["categories"][0]["standard_code"] = "交通 01"
    fields = [f for f, _ in errors_of(data)]
    assert "categories.0.standard_code" in fields


def test_every_held_out_file_is_checked_here():
    """routing-eval measures every unseen_appeals*.yaml; each must be one the tests below check."""
    assert sorted(p.name for p in UNSEEN_PATH.parent.glob("unseen_appeals*.yaml")) == sorted(HELD_OUT)


@pytest.mark.parametrize("name", HELD_OUT)
def test_unseen_appeals_name_units_that_handle_appeals(name):
    district = load_district()
    codes = {u.unit_code for u in handling_units(district)}
    appeals = unseen_appeals(name)
    count, ambiguous_range, clear_per_unit = HELD_OUT[name]
    assert len(appeals) == count
    for appeal in appeals:
        assert set(appeal) == {"content", "acceptable"}, appeal  # no category hint
        assert appeal["acceptable"] and set(appeal["acceptable"]) <= codes, appeal
        assert len(appeal["acceptable"]) == len(set(appeal["acceptable"]))
        assert 20 <= len(appeal["content"]) <= 120, appeal["content"]
    contents = [appeal["content"] for appeal in appeals]
    assert len(contents) == len(set(contents))
    ambiguous = [a for a in appeals if len(a["acceptable"]) > 1]
    assert len(ambiguous) in ambiguous_range
    assert {u for a in appeals for u in a["acceptable"]} == codes  # every unit is measured
    clear = [a["acceptable"][0] for a in appeals if len(a["acceptable"]) == 1]
    assert [u for u in sorted(codes) if clear.count(u) < clear_per_unit] == []  # each unit measured on its own


@pytest.mark.parametrize("name", HELD_OUT)
def test_an_appeal_for_a_town_or_street_alone_names_the_place(name):
    """A town or street handles what happens within it: an enterprise says where (黄水镇金桥村, 在九江的厂区)."""
    district = load_district()
    places = {u.unit_code: u.name.removesuffix("街道").removesuffix("镇") if len(u.name) > 2 else u.name
              for u in district.units if u.kind == UnitKind.town}
    for appeal in unseen_appeals(name):
        if set(appeal["acceptable"]) <= set(places):
            assert any(places[u] in appeal["content"] for u in appeal["acceptable"]), appeal


@pytest.mark.parametrize("name", HELD_OUT)
def test_unseen_appeals_are_held_out_from_the_examples(name):
    examples = [text for unit in load_district().units for text in unit.examples]
    for appeal in unseen_appeals(name):
        content = appeal["content"]
        for text in examples:
            assert content not in text and text not in content, (content, text)
            assert similarity(content, text) < 0.5, (content, text)  # nor an example with a word changed


def test_the_held_out_sets_are_independent_of_each_other():
    """No appeal of one set is (nearly) an appeal of another, so each set measures on its own."""
    sets = [[a["content"] for a in unseen_appeals(name)] for name in HELD_OUT]
    for i, first in enumerate(sets):
        for second in sets[i + 1:]:
            for a in first:
                for b in second:
                    assert similarity(a, b) < 0.5, (a, b)


# --- bad files ---------------------------------------------------------------------------


def test_unknown_default_unit_names_the_category_field():
    data = raw()
    data["categories"][0]["default_unit"] = "no_such_unit"
    [(field, message)] = errors_of(data)
    assert "categories.traffic.default_unit" in message and "no_such_unit" in message


def test_unknown_routing_unit_names_the_rule():
    data = raw()
    data["routing"][2]["unit"] = "nobody"
    [(_, message)] = errors_of(data)
    assert message.startswith("routing.2.unit")


def test_unknown_routing_category_names_the_rule():
    data = raw()
    data["routing"][1]["categories"] = ["不存在的类别"]
    [(_, message)] = errors_of(data)
    assert message.startswith("routing.1.categories")


def test_unknown_leader_category_names_the_leader():
    data = raw()
    data["leaders"][0]["categories"] = ["不存在的类别"]
    [(_, message)] = errors_of(data)
    assert message.startswith("leaders.leader_liu.categories")


def test_bad_unit_code_names_the_field():
    data = raw()
    data["units"][3]["unit_code"] = "Traffic-Police"
    fields = [f for f, _ in errors_of(data)]
    assert "units.3.unit_code" in fields


def test_bad_phone_names_the_field():
    data = raw()
    data["units"][2]["liaisons"][0]["phone"] = "12345"
    fields = [f for f, _ in errors_of(data)]
    assert any(f.startswith("units.2.liaisons.0.phone") for f in fields)


def test_bad_token_hash_names_the_field():
    data = raw()
    data["units"][0]["token_sha256"] = "token-approval_bureau"
    fields = [f for f, _ in errors_of(data)]
    assert "units.0.token_sha256" in fields


def test_missing_deadline_names_the_field():
    data = raw()
    del data["categories"][4]["deadline_days"]
    fields = [f for f, _ in errors_of(data)]
    assert "categories.4.deadline_days" in fields


def test_unknown_field_is_refused_by_name():
    data = raw()
    data["units"][0]["fax"] = "028-88886666"
    fields = [f for f, _ in errors_of(data)]
    assert "units.0.fax" in fields


def test_two_lead_units_are_refused():
    data = raw()
    data["units"][2]["kind"] = "lead"
    [(_, message)] = errors_of(data)
    assert "exactly one unit must be of kind 'lead'" in message


def test_an_alias_naming_two_units_is_refused():
    data = raw()
    data["units"][3]["aliases"].append("供电部门")  # already power_supply's
    [(_, message)] = errors_of(data)
    assert "aliases" in message and "供电部门" in message


def test_duplicate_unit_codes_are_refused():
    data = raw()
    data["units"].append(copy.deepcopy(data["units"][2]))
    data["units"][-1]["aliases"] = []
    data["units"][-1]["name"] = "另一个交警大队"
    [(_, message)] = errors_of(data)
    assert "unit_code values must be unique" in message


def test_a_bad_file_on_disk_is_reported_by_load_district(tmp_path):
    data = raw()
    data["categories"][0]["sign_hours"] = 0
    path = tmp_path / "district.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        load_district(path)
    assert "categories.0.sign_hours" in [e.field for e in field_errors(info.value)]
