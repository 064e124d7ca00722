"""Hot topics (热点研判): the analysis alone, on the appeals of tests/data/topic_appeals.yaml and a few more."""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.intake import topics
from services.intake.topics import SHANGHAI, TopicAppeal, TopicSettings, analyse

DATA = Path(__file__).parents[1] / "data" / "topic_appeals.yaml"
MONTH = "2026-11"


def file_appeals() -> list[dict]:
    """The rows of the data file, as written."""
    return yaml.safe_load(DATA.read_text(encoding="utf-8"))["appeals"]


def received_at(row: dict, month: str) -> datetime:
    m = topics.shift_month(month, row["month"])
    return datetime(int(m[:4]), int(m[5:]), row["day"], 10, 30, tzinfo=SHANGHAI)


def appeals(month: str = MONTH) -> list[TopicAppeal]:
    """The data file's appeals with ids CT-0000.. in file order, the month analysed being ``month``."""
    return [TopicAppeal(appeal_id=f"CT-{i:04d}", content=r["content"], received_at=received_at(r, month),
                        category=r.get("category") or topics.OTHER, enterprise_key=r["phone"],
                        kind=r.get("kind", "appeal"))
            for i, r in enumerate(file_appeals())]


def ids_where(predicate, month_offset: int | None = 0) -> set[str]:
    return {f"CT-{i:04d}" for i, r in enumerate(file_appeals())
            if predicate(r) and (month_offset is None or r["month"] == month_offset)}


def power(row: dict) -> bool:
    return "停电" in row["content"] and row.get("kind") != "praise"


def lamp(row: dict) -> bool:
    return "路灯" in row["content"]


@pytest.fixture(scope="module")
def report() -> topics.TopicsReport:
    return analyse(appeals(), MONTH)


def test_a_growing_theme_is_found_and_proposed(report):
    theme = report.themes[0]
    assert set(theme.appeal_ids) == ids_where(power)  # the eight this month, one of them without a hint
    assert "停电" in theme.terms
    assert theme.main_category == "水电气保障"
    assert theme.enterprises == 8
    proposal = report.proposal
    assert proposal is not None and proposal.basis == "theme" and proposal.theme_id == theme.theme_id
    assert proposal.title.startswith("水电气保障：") and "停电" in proposal.title
    assert {a.appeal_id for a in proposal.supporting} == ids_where(power)
    assert all(a.summary and len(a.summary) <= 40 for a in proposal.supporting)
    assert "本月8件" in proposal.why


def test_growth_is_against_the_mean_of_the_previous_months(report):
    assert report.previous_months == ["2026-08", "2026-09", "2026-10"]
    assert report.appeals == 22 and report.previous_appeals == [11, 12, 13]
    theme = report.themes[0]
    assert theme.previous == [1, 1, 2]  # the earlier 停电 appeals joined the theme they resemble
    assert theme.previous_mean == pytest.approx(4 / 3, abs=1e-3)
    assert theme.growth == pytest.approx((8 - 4 / 3) / (4 / 3), abs=1e-3)
    by_category = {c.category: c for c in report.categories}
    assert (by_category["水电气保障"].count, by_category["水电气保障"].previous) == (7, [1, 1, 2])
    assert by_category["水电气保障"].growth == pytest.approx(4.25)
    assert by_category["人才招聘"].previous == [3, 3, 3] and by_category["人才招聘"].growth == 0.0
    assert by_category["企业发展"].count == 0 and by_category["企业发展"].growth == -1.0
    assert by_category["环境保护"].new and by_category["环境保护"].growth is None
    assert by_category["水电气保障"].share == pytest.approx(7 / 22, abs=1e-4)
    assert report.categories[0].category == "水电气保障"  # most appeals first


def test_growth_of_counts():
    assert topics.growth_of(6, [2, 4, 0]) == {"count": 6, "previous": [2, 4, 0], "previous_mean": 2.0,
                                              "growth": 2.0, "new": False}
    assert topics.growth_of(3, [0, 0, 0])["new"] and topics.growth_of(3, [0, 0, 0])["growth"] is None
    assert topics.growth_of(0, [0, 0])["new"] is False


def test_three_similar_appeals_of_one_enterprise_are_reported_as_repeated(report):
    assert len(report.repeated) == 1
    group = report.repeated[0]
    assert set(group.appeal_ids) == ids_where(lamp, None)  # once last month, twice this month
    assert (group.count, group.in_month, group.enterprises, group.most_by_one_enterprise) == (3, 2, 1, 3)
    assert group.same_enterprise
    assert group.first_at < group.last_at
    assert group.theme_id is not None  # the two of this month are a theme too
    lamp_theme = next(t for t in report.themes if t.theme_id == group.theme_id)
    assert lamp_theme.repeated == 2


def test_three_enterprises_raising_the_same_matter_are_reported_as_repeated():
    base = datetime(2026, 11, 5, 9, tzinfo=SHANGHAI)
    same = ["西航港街道腾飞路的下水道堵了，一下雨门口就积水，货车进不了厂。",
            "腾飞路下水道堵了好几天，一下雨门口积水很深，货车都进不了厂区。",
            "西航港腾飞路的下水道堵塞，下雨后门口积水，运货的车进不了厂。"]
    others = ["想咨询一下今年的稳岗补贴怎么申请，需要准备什么材料。",
              "隔壁小区装修噪音太大，晚上十点以后还在施工。",
              "我们的出口退税资料上个月就报了，一直显示审核中。"]
    rows = [TopicAppeal(f"CT-{i}", text, base + timedelta(days=i), "市政设施", f"1390000000{i}")
            for i, text in enumerate(same + others)]
    report = analyse(rows, MONTH)
    assert [set(g.appeal_ids) for g in report.repeated] == [{"CT-0", "CT-1", "CT-2"}]
    group = report.repeated[0]
    assert (group.enterprises, group.most_by_one_enterprise, group.same_enterprise) == (3, 1, False)


def test_praise_is_counted_in_its_category_but_is_never_a_theme(report):
    praise = ids_where(lambda r: r.get("kind") == "praise")
    assert praise and not praise & {a for t in report.themes for a in t.appeal_ids}
    assert not praise & {a for g in report.repeated for a in g.appeal_ids}
    assert sum(c.count for c in report.categories) == report.appeals


def test_the_same_appeals_give_the_same_report_in_any_order(report):
    shuffled = appeals()
    random.Random(7).shuffle(shuffled)
    again = analyse(shuffled, MONTH)
    assert again == report
    assert topics.render(again, "json") == topics.render(report, "json")


def test_appeals_outside_the_window_are_ignored(report):
    older = [TopicAppeal("CT-OLD", "临空经济区停电了", datetime(2026, 7, 31, 23, tzinfo=SHANGHAI), "水电气保障"),
             TopicAppeal("CT-NEW", "临空经济区停电了", datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI), "水电气保障")]
    assert analyse(appeals() + older, MONTH) == report


def test_month_boundaries_are_in_shanghai_time():
    # 2026-10-31 16:30 UTC is 2026-11-01 00:30 in Shanghai: November
    rows = [TopicAppeal("CT-1", "路口拥堵", datetime.fromisoformat("2026-10-31T16:30:00+00:00"), "交通出行")]
    assert analyse(rows, MONTH).appeals == 1
    assert topics.shift_month("2026-01", -3) == "2025-10" and topics.shift_month("2025-12", 1) == "2026-01"
    assert topics.window("2026-01", 2) == (datetime(2025, 11, 1, tzinfo=SHANGHAI), datetime(2026, 2, 1, tzinfo=SHANGHAI))
    with pytest.raises(ValueError, match="YYYY-MM"):
        topics.month_bounds("2026-13")


def test_without_a_theme_the_busiest_category_is_proposed():
    base = datetime(2026, 11, 5, 9, tzinfo=SHANGHAI)
    rows = [TopicAppeal("CT-1", "公司想扩建厂房，用地规划许可需要哪些材料。", base, "规划建设"),
            TopicAppeal("CT-2", "隔壁工厂晚上排放废气，味道刺鼻。", base, "环境保护"),
            TopicAppeal("CT-3", "营业执照经营范围变更要准备什么。", base, "行政审批"),
            TopicAppeal("CT-4", "商标被人抢注了怎么办。", base, "行政审批")]
    report = analyse(rows, MONTH)
    assert report.themes == []
    assert report.proposal is not None and report.proposal.basis == "category"
    assert report.proposal.title == "行政审批" and {a.appeal_id for a in report.proposal.supporting} == {"CT-3", "CT-4"}


def test_an_empty_month_has_no_proposal():
    report = analyse([], MONTH)
    assert (report.appeals, report.themes, report.repeated, report.proposal) == (0, [], [], None)
    assert "(none" in topics.render(report, "table")


def test_csv_opens_in_excel_as_it_is(report):
    text = topics.render(report, "csv")
    assert text.startswith("\ufeff") and "\r\n" in text
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    assert tuple(rows[0]) == topics.CSV_COLUMNS
    assert rows[1][0] == "每月一题" and "停电" in rows[1][2]
    sections = {r[0] for r in rows[1:]}
    assert sections == {"每月一题", "类别", "文本主题", "重复诉求"}
    theme = next(r for r in rows if r[0] == "文本主题")
    assert theme[4] == "8" and theme[7] == "500.0%" and len(theme[11].split()) == 8


def test_a_cell_that_looks_like_a_formula_stays_text():
    base = datetime(2026, 11, 5, 9, tzinfo=SHANGHAI)
    rows = [TopicAppeal(f"CT-{i}", "=HYPERLINK(\"x\") 园区门口的路灯坏了晚上很黑", base, "=1+1") for i in range(3)]
    text = topics.render(analyse(rows, MONTH), "csv")
    assert "\n=" not in text and ",=" not in text and "'=" in text


def test_the_table_shows_the_proposal_themes_and_repeated_appeals(report):
    table = topics.render(report, "table")
    assert table.startswith("热点研判 hot topics 2026-11: 22 件")
    assert "每月一题" in table and report.proposal.title in table
    assert "T01" in table and "R01" in table and "score =" in table
    with pytest.raises(ValueError, match="format"):
        topics.render(report, "xml")  # type: ignore[arg-type]


def test_phones_in_appeals_are_masked_in_summaries():
    base = datetime(2026, 11, 5, 9, tzinfo=SHANGHAI)
    rows = [TopicAppeal(f"CT-{i}", f"请回电13912345678，园区停电{i}次", base, "水电气保障") for i in range(3)]
    out = topics.render(analyse(rows, MONTH), "json")
    assert "13912345678" not in out and "139****5678" in out


def test_a_large_month_is_clustered_through_micro_clusters_with_the_same_result():
    from bench.topics import synthetic

    rows = synthetic(900, MONTH, 3)
    report = analyse(rows, MONTH, TopicSettings(direct_limit=300))
    assert report.appeals == 900
    assert report.proposal is not None and report.proposal.category == "水电气保障"
    assert "停电" in report.proposal.title  # the matter that grows month after month
    assert report.themes[0].growth > 0.5
    assert analyse(rows, MONTH, TopicSettings(direct_limit=300)) == report
