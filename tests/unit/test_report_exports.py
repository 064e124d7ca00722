"""The monthly ranking as the files people take away: CSV for Excel, xlsx, PDF and PNG with the chart.

Pure: a ranking made by the domain from counts given here, the district's own
configuration for the units' names. (GET /report?format= over the real stack is
in tests/integration/test_escalation.py.)
"""

from __future__ import annotations

import csv
import io

import pytest

from services.escalation import domain, evaluation, exports
from services.escalation.config import context
from services.escalation.domain import UnitMonthStats

MONTH = "2026-11"


@pytest.fixture(scope="module")
def ctx():
    return context()


@pytest.fixture(scope="module")
def ranking(ctx):
    stats = [
        UnitMonthStats(unit_code="traffic_police", month=MONTH, received=8, signed_on_time=8, due=6, closed=5,
                       closed_on_time=5, replied=6, rated=5, satisfied=4, basically_satisfied=1, returned=1),
        UnitMonthStats(unit_code="sanitation", month=MONTH, received=6, signed_on_time=5, due=5, closed=5,
                       closed_on_time=4, replied=5, rated=4, satisfied=2, basically_satisfied=1, reopened=1,
                       noticed=1),
        UnitMonthStats(unit_code="huangshui_town", month=MONTH, received=2, signed_on_time=2, due=1, closed=1,
                       closed_on_time=1, replied=1, rated=1, satisfied=1),
    ]
    evaluations = [domain.evaluate_unit(s, ctx.weights) for s in stats]
    return domain.rank_units(evaluations, ctx.weights, min_orders=5)


def names(ctx, *codes: str) -> list[str]:
    return [ctx.unit_name(code) for code in codes]


def test_every_field_of_a_unit_row_has_one_column_with_a_chinese_and_an_english_header():
    assert evaluation.COLUMNS == tuple(evaluation.UnitRow.model_fields)
    for column in evaluation.COLUMN_TABLE:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in column.zh), column
        assert column.en.isascii() and column.en, column
    assert len({c.zh for c in evaluation.COLUMN_TABLE}) == len(evaluation.COLUMN_TABLE)


def test_the_csv_opens_in_excel_as_it_is_bom_one_header_row_crlf_chinese_headers_and_names(ranking, ctx):
    body = evaluation.export(ranking, MONTH, ctx, "csv")
    assert body.startswith(b"\xef\xbb\xbf")
    text = body.decode("utf-8-sig")
    assert "#" not in text.splitlines()[0] and not any(line.startswith("#") for line in text.splitlines())
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == [c.zh for c in evaluation.COLUMN_TABLE]
    assert rows[0][:4] == ["排名", "单位代码", "单位", "得分"]
    table = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [r["单位"] for r in table] == names(ctx, "traffic_police", "sanitation", "huangshui_town")
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r["单位"]) for r in table)
    assert [r["排名"] for r in table] == ["1", "2", ""]
    assert table[2]["备注"] == "受理少于5件，列出不排名"
    assert float(table[0]["办结率"]) == pytest.approx(5 / 6, abs=1e-4)


def test_the_csv_in_english_on_request(ranking, ctx):
    text = evaluation.export(ranking, MONTH, ctx, "csv", lang="en").decode("utf-8-sig")
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert header == [c.en for c in evaluation.COLUMN_TABLE] and header[:3] == ["Rank", "Unit code", "Unit"]
    assert rows[2][header.index("Note")] == "fewer than 5 orders"
    assert rows[0][header.index("Unit")] == ctx.unit_name("traffic_police")  # the unit's own name, in any language


def test_the_xlsx_opens_with_openpyxl_with_the_chinese_headers_names_and_rates_as_percentages(ranking, ctx):
    from openpyxl import load_workbook

    body = evaluation.export(ranking, MONTH, ctx, "xlsx")
    assert body[:2] == b"PK"
    book = load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["排名", "说明"]
    sheet = book["排名"]
    rows = list(sheet.iter_rows(values_only=True))
    assert list(rows[0]) == [c.zh for c in evaluation.COLUMN_TABLE]
    unit, rate = rows[0].index("单位"), rows[0].index("办结率")
    assert [r[unit] for r in rows[1:]] == names(ctx, "traffic_police", "sanitation", "huangshui_town")
    assert rows[1][0] == 1 and rows[3][0] is None
    assert rows[1][rate] == pytest.approx(5 / 6) and sheet.cell(row=2, column=rate + 1).number_format == "0.0%"
    about = {r[0]: r[1] for r in book["说明"].iter_rows(values_only=True)}
    assert about["月份"] == MONTH and "score = 100" in about["计分公式"] and about["最少受理数"] == 5

    english = load_workbook(io.BytesIO(evaluation.export(ranking, MONTH, ctx, "xlsx", lang="en")))
    assert english.sheetnames == ["Ranking", "About"]
    assert next(english["Ranking"].iter_rows(values_only=True))[:3] == ("Rank", "Unit code", "Unit")


@pytest.mark.parametrize(("fmt", "magic"), [("pdf", b"%PDF-"), ("png", b"\x89PNG\r\n\x1a\n")])
def test_the_pdf_and_png_carry_the_chart(ranking, ctx, fmt, magic):
    body = evaluation.export(ranking, MONTH, ctx, fmt)
    assert body.startswith(magic)
    assert len(body) > 20_000  # a page with bars, a table and text, not an empty canvas
    empty = evaluation.export(domain.rank_units([], ctx.weights, 5), MONTH, ctx, fmt)
    assert empty.startswith(magic) and len(empty) < len(body)


def test_the_png_is_a_page_of_its_own_size(ranking, ctx):
    body = evaluation.export(ranking, MONTH, ctx, "png")
    width, height = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
    assert width >= 1200 and height >= 900


def test_without_a_cjk_font_the_chart_says_so_and_shows_unit_codes(ranking, ctx, monkeypatch, caplog):
    monkeypatch.setattr(exports, "cjk_font", lambda: None)
    body = evaluation.export(ranking, MONTH, ctx, "pdf")
    assert body.startswith(b"%PDF-")
    assert exports.NO_CJK_FONT in caplog.text


def test_a_cjk_font_is_found_where_fonts_noto_cjk_is_installed():
    found = exports.cjk_font()
    if found is None:
        pytest.skip("no CJK font on this machine (apt-get install fonts-noto-cjk)")
    assert found.is_file()
