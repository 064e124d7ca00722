"""Bar charts as inline SVG, drawn on the server (no script, no library): the ranking's scores and rates."""

from __future__ import annotations

from html import escape

BAR_H = 18
GAP = 6
LABEL_W = 190
PLOT_W = 420
VALUE_W = 70


def bar_chart(title: str, rows: list[tuple[str, float | None]], *, maximum: float = 100.0,
              suffix: str = "", series_class: str = "bar") -> str:
    """A horizontal bar chart: one bar per (label, value), values clamped to [0, maximum]; None draws no bar.

    Returns an ``<svg>`` element with a ``<title>`` (read by screen readers) and a
    text value beside each bar, so the figures can be read without the bars.
    """
    height = GAP + len(rows) * (BAR_H + GAP) + 24
    width = LABEL_W + PLOT_W + VALUE_W
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = LABEL_W + tick * PLOT_W
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{GAP}" x2="{x:.1f}" y2="{height - 20}"/>')
        out.append(f'<text class="tick" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
                   f'{tick * maximum:g}{escape(suffix)}</text>')
    for i, (label, value) in enumerate(rows):
        y = GAP + i * (BAR_H + GAP)
        out.append(f'<text class="label" x="{LABEL_W - 8}" y="{y + BAR_H - 5}" text-anchor="end">'
                   f'{escape(label)}</text>')
        if value is None:
            out.append(f'<text class="value" x="{LABEL_W + 4}" y="{y + BAR_H - 5}">—</text>')
            continue
        w = max(0.0, min(value, maximum)) / maximum * PLOT_W if maximum else 0.0
        out.append(f'<rect class="{escape(series_class)}" x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}">'
                   f'<title>{escape(label)}: {value:.1f}{escape(suffix)}</title></rect>')
        out.append(f'<text class="value" x="{LABEL_W + w + 6:.1f}" y="{y + BAR_H - 5}">{value:.1f}{escape(suffix)}</text>')
    out.append("</svg>")
    return "".join(out)
