"""The monthly ranking as files people take away: Excel (xlsx) and a PDF or PNG with the chart.

The columns are :data:`services.escalation.evaluation.COLUMN_TABLE` (one
definition, Chinese headers by default, English with ``lang="en"``); the rows
are :func:`~services.escalation.evaluation.table_rows`. openpyxl and matplotlib
are imported here only, when an export is asked for, so the service starts
without them.

Chinese glyphs need a CJK font: :func:`cjk_font` finds one (``fc-list
:lang=zh``, then matplotlib's own font list; Debian's ``fonts-noto-cjk``). On a
machine without one the chart is drawn with the unit codes and English labels,
and says so in its footer, instead of empty boxes.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from services.escalation import domain
from services.escalation.evaluation import COLUMN_TABLE, Column, Lang, table_rows

if TYPE_CHECKING:
    from services.escalation.config import Context

log = logging.getLogger("coffeetime.escalation.exports")

NO_CJK_FONT = "no CJK font on this machine (install fonts-noto-cjk): unit codes and English labels shown"

# the chart's table: the figures a reader compares first (all columns are in the xlsx and the CSV)
CHART_COLUMNS = ("rank", "unit", "score", "received", "closure_rate", "satisfaction_rate", "on_time_rate",
                 "overdue", "noticed")
_TEXTS = {
    "zh": {"title": "{district} {month} 单位考评排名", "sheet": "排名", "about": "说明", "month": "月份",
           "district": "区县", "formula": "计分公式", "min_orders": "最少受理数", "unranked":
           "受理少于{n}件的单位列出但不排名", "weights": "权重", "score": "得分", "empty": "本月无可排名的单位"},
    "en": {"title": "{district} unit evaluation {month}", "sheet": "Ranking", "about": "About", "month": "Month",
           "district": "District", "formula": "Formula", "min_orders": "Minimum orders", "unranked":
           "units with fewer than {n} orders received are listed but not ranked", "weights": "Weights",
           "score": "Score", "empty": "no unit to rank this month"},
}


def xlsx(ranking: domain.Ranking, month: str, ctx: Context, lang: Lang = "zh") -> bytes:
    """The workbook: sheet 1 the ranking (header row, rates as percentages, frozen header), sheet 2 the formula,
    weights and the min_orders rule."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    texts = _TEXTS[lang]
    book = Workbook()
    sheet = book.active
    sheet.title = texts["sheet"]
    sheet.append([c.header(lang) for c in COLUMN_TABLE])
    for values in table_rows(ranking, ctx, lang):
        sheet.append(values)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for index, column in enumerate(COLUMN_TABLE, start=1):
        letter = get_column_letter(index)
        number_format = {"rate": "0.0%", "score": "0.00"}.get(column.kind)
        if number_format:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = number_format
        widest = max([_width(column.header(lang))] + [_width(c.value) for (c,) in
                                                       sheet.iter_rows(min_row=2, min_col=index, max_col=index)])
        sheet.column_dimensions[letter].width = min(40, widest + 2)
    sheet.freeze_panes = "A2"

    about = book.create_sheet(texts["about"])
    for row in ((texts["month"], month), (texts["district"], ctx.district.name), (texts["formula"], ranking.formula),
                (texts["min_orders"], ranking.min_orders), ("", texts["unranked"].format(n=ranking.min_orders)),
                *((f"{texts['weights']}: {k}", v) for k, v in ranking.weights.model_dump().items())):
        about.append(list(row))
    about.column_dimensions["A"].width = 24
    about.column_dimensions["B"].width = 100
    book.properties.title = texts["title"].format(district=ctx.district.name, month=month)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _width(value: object) -> int:
    """Display width in Excel's characters: a CJK character takes two."""
    text = "" if value is None else str(value)
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


@functools.cache
def cjk_font() -> Path | None:
    """A font file with Chinese glyphs on this machine, or None."""
    if shutil.which("fc-list"):
        try:
            listed = subprocess.run(["fc-list", ":lang=zh", "file", "style"], capture_output=True, text=True,
                                    timeout=30, check=False).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            listed = []
        # "path: :style=Regular"; a regular sans face reads best at small sizes
        files = [line.split(":", 1)[0].strip() for line in listed if line.strip()]
        files.sort(key=lambda f: ("Sans" not in f, "Regular" not in f and "regular" not in f, f))
        for name in files:
            if Path(name).is_file():
                return Path(name)
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if any(word in entry.name for word in ("CJK", "Hei", "Song", "WenQuanYi", "Source Han", "Droid Sans Fallback")):
            return Path(entry.fname)
    return None


def chart(ranking: domain.Ranking, month: str, ctx: Context, fmt: str, lang: Lang = "zh") -> bytes:
    """The ranking as a PDF or PNG page: the scores as bars (unranked units left out), the key figures as a
    table under them, and the formula and rules as the footer."""
    from matplotlib import font_manager
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font_file = cjk_font()
    if font_file is None:
        log.warning(NO_CJK_FONT)
        lang = "en"
        font = font_manager.FontProperties(family="DejaVu Sans")
    else:
        font_manager.fontManager.addfont(str(font_file))
        # the CJK face first, DejaVu for what it lacks (the formula's subscripts)
        name = font_manager.FontProperties(fname=str(font_file)).get_name()
        font = font_manager.FontProperties(family=[name, "DejaVu Sans"])
    texts = _TEXTS[lang]
    columns: list[Column] = [c for c in COLUMN_TABLE if c.key in CHART_COLUMNS]
    positions = [COLUMN_TABLE.index(c) for c in columns]
    rows = [[values[i] for i in positions] for values in table_rows(ranking, ctx, lang)]
    if font_file is None:  # no glyphs for the names: their codes instead
        codes = [r.evaluation.unit_code for r in ranking.rows]
        unit_at = [c.key for c in columns].index("unit")
        for row, code in zip(rows, codes, strict=True):
            row[unit_at] = code
    ranked = [(row, r.score) for row, r in zip(rows, ranking.rows, strict=True) if r.rank is not None]

    height = 3.2 + 0.32 * max(1, len(ranked)) + 0.3 * (len(rows) + 1)
    figure = Figure(figsize=(11.69, max(8.27, height)))  # A4 landscape, taller for a long ranking
    FigureCanvasAgg(figure)
    title = texts["title"].format(district=ctx.district.name if font_file else "", month=month).strip()
    figure.suptitle(title, fontproperties=font, fontsize=16)
    bars, table_area = figure.subplots(2, 1, height_ratios=[max(1, len(ranked)) * 0.32 + 1.2,
                                                            (len(rows) + 1) * 0.3 + 0.2])
    unit_at = [c.key for c in columns].index("unit")
    if ranked:
        names = [f"{row[0]}. {row[unit_at]}" for row, _ in ranked][::-1]
        scores = [score for _, score in ranked][::-1]
        drawn = bars.barh(names, scores, color="#2f6f9f")
        bars.bar_label(drawn, fmt="%.2f", padding=3, fontproperties=font)
        bars.set_xlabel(texts["score"], fontproperties=font)
        for label in bars.get_yticklabels():
            label.set_fontproperties(font)
        bars.set_xlim(0, max(100.0, max(scores) * 1.1))
        bars.spines[["top", "right"]].set_visible(False)
    else:
        bars.axis("off")
        bars.text(0.5, 0.5, texts["empty"], ha="center", va="center", fontproperties=font, fontsize=14)

    table_area.axis("off")
    if rows:
        cells = [[c.show(v) for v, c in zip(row, columns, strict=True)] for row in rows]
        table = table_area.table(cellText=cells, colLabels=[c.header(lang) for c in columns], loc="upper center",
                                 cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        for cell in table.get_celld().values():
            cell.get_text().set_fontproperties(font)
            cell.get_text().set_fontsize(9)
        table.auto_set_column_width(list(range(len(columns))))
    footer = [*textwrap.wrap(ranking.formula, 180), texts["unranked"].format(n=ranking.min_orders)]
    if font_file is None:
        footer.append(NO_CJK_FONT)
    figure.text(0.02, 0.01, "\n".join(footer), fontproperties=font, fontsize=8, va="bottom")
    figure.subplots_adjust(left=0.22, right=0.95, top=0.92, bottom=0.12, hspace=0.25)
    out = io.BytesIO()
    figure.savefig(out, format=fmt, dpi=120 if fmt == "png" else None, metadata={"Title": title} if fmt == "pdf" else None)
    return out.getvalue()

