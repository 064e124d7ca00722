"""``coffeetime routing-eval`` measures every held-out file, each in rows of its own (no full evaluation here)."""

from __future__ import annotations

import json
from dataclasses import asdict

from shared.district import load_district
from tools.routing_eval import (
    HELD_OUT_DIR,
    UNSEEN,
    Figures,
    Report,
    held_out_figures,
    held_out_files,
    load_held_out_sets,
    render_table,
    set_label,
)


def write_set(path, *contents):
    path.write_text("appeals:\n" + "".join(f"  - content: {c}\n    acceptable: [tax_bureau]\n" for c in contents),
                    encoding="utf-8")


def test_every_unseen_appeals_file_is_measured_the_original_first(tmp_path):
    write_set(tmp_path / "unseen_appeals_zz.yaml", "去年多缴的税款什么时候能退回来？")
    write_set(tmp_path / "unseen_appeals.yaml", "发票开具系统经常掉线，客户等着要票。", "电子税务局登不上。")
    write_set(tmp_path / "unseen_appeals_new_user.yaml", "研发费用加计扣除去年漏报了，今年还能补吗？")
    (tmp_path / "other.yaml").write_text("appeals: []\n", encoding="utf-8")
    paths = held_out_files(tmp_path)
    assert [p.name for p in paths] == ["unseen_appeals.yaml", "unseen_appeals_new_user.yaml", "unseen_appeals_zz.yaml"]
    sets = load_held_out_sets(paths)
    assert {name: len(appeals) for name, appeals in sets.items()} == {
        "unseen_appeals": 2, "unseen_appeals_new_user": 1, "unseen_appeals_zz": 1}
    assert sets["unseen_appeals_zz"][0].acceptable == frozenset({"tax_bureau"})


def test_the_shipped_held_out_files_are_both_found():
    names = [p.name for p in held_out_files()]
    assert names[0] == UNSEEN.name
    assert "unseen_appeals_new_user.yaml" in names
    assert all(p.parent == HELD_OUT_DIR for p in held_out_files())


def test_the_original_set_keeps_its_rows_and_the_others_are_named_by_their_suffix():
    assert set_label("unseen_appeals") == ""
    assert set_label("unseen_appeals_new_user") == "new_user"
    assert set_label("my_appeals") == "my_appeals"  # a file given with --unseen


def figures(right: int, manual: int, wrong: int) -> dict:
    return Figures(right + manual + wrong, right, manual, wrong).as_dict()


def a_report() -> Report:
    original = {"rules_only": figures(21, 39, 0), "with_model": figures(38, 22, 0)}
    new_user = {"rules_only": figures(29, 49, 2), "with_model": figures(54, 25, 1)}
    return Report(
        settings={"k": 5, "seed": 1, "examples": 292, "held_out_appeals": 60, "held_out_name": "unseen_appeals",
                  "held_out_sets": {"unseen_appeals": 60, "unseen_appeals_new_user": 80},
                  "model_weight": 5.0, "model_min_probability": 0.1, "model_sure_ratio": 4.0, "min_score": 2.0,
                  "min_margin": 1.0},
        cross_validation={"total": figures(120, 156, 16), "folds": []},
        held_out=original,
        timing={"examples": 292, "training_ms": 1.0, "batch": 1000, "predict_us_per_appeal": 1.0,
                "route_us_per_appeal": 1.0},
        held_out_sets={"unseen_appeals": {"appeals": 60, **original},
                       "unseen_appeals_new_user": {"appeals": 80, **new_user}},
    )


def test_the_table_has_rules_only_and_model_rows_for_each_held_out_set():
    lines = render_table(a_report()).splitlines()
    assert "60 held-out appeals (and 80 in unseen_appeals_new_user)" in lines[0]
    rows = {line[:34].rstrip(): line[34:].split() for line in lines if line.startswith("held-out")}
    assert rows == {
        "held-out, rules only": ["60", "35.0", "%", "65.0", "%", "0.0", "%"],
        "held-out, rules + model": ["60", "63.3", "%", "36.7", "%", "0.0", "%"],
        "held-out new_user, rules only": ["80", "36.2", "%", "61.3", "%", "2.5", "%"],
        "held-out new_user, rules + model": ["80", "67.5", "%", "31.2", "%", "1.2", "%"],
    }


def test_a_report_of_before_the_sets_still_renders_its_held_out_rows():
    report = a_report()
    report.held_out_sets = {}
    rows = [line[:34].rstrip() for line in render_table(report).splitlines() if line.startswith("held-out")]
    assert rows == ["held-out, rules only", "held-out, rules + model"]


def test_the_json_keeps_held_out_for_the_original_and_adds_every_set():
    data = json.loads(json.dumps(asdict(a_report()), ensure_ascii=False))
    assert data["held_out"]["with_model"]["accuracy"] == 0.6333
    assert data["settings"]["held_out_appeals"] == 60
    assert data["held_out_sets"]["unseen_appeals"]["with_model"] == data["held_out"]["with_model"]
    assert data["held_out_sets"]["unseen_appeals_new_user"]["rules_only"]["misrouted"] == 2


def test_each_appeal_of_the_new_user_set_is_counted_once_by_the_rules():
    district = load_district()
    appeals = load_held_out_sets([HELD_OUT_DIR / "unseen_appeals_new_user.yaml"])["unseen_appeals_new_user"]
    result = held_out_figures(district, appeals, None)  # rules only for both: no model given
    for f in (result["rules_only"], result["with_model"]):
        assert f["appeals"] == 80
        assert f["dispatched_right"] + f["manual"] + f["misrouted"] == 80
    assert result["rules_only"] == result["with_model"]
