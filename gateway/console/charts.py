"""Server-rendered SVG bar charts: no JavaScript, nothing for the Content-Security-Policy to block
(colours are SVG presentation attributes, not style attributes). Pure: numbers in, markup out.

Each chart is an image with a title and a description (role="img", aria-labelledby); the page puts
the same numbers in a table beside it, so nothing is conveyed by colour or shape alone (WCAG 1.1.1,
1.4.1). Bar colours are NHS.UK colours with at least 3:1 contrast against white (WCAG 1.4.11).

    months ─┬─ series 1 ▇  ▇     grouped bars: one group per month, one bar per series
            └─ series 2  ▇  ▇    y axis from 0 to a round maximum, 4 gridlines
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# NHS.UK colours: blue, dark green, purple, dark pink, dark grey, warm yellow's dark partner (all >= 3:1 on white)
PALETTE = ("#005eb8", "#007f3b", "#330072", "#7c2855", "#425563", "#8a1538")
WIDTH, HEIGHT = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 64
LEGEND_ROW = 20


@dataclass(frozen=True)
class Series:
    name: str
    values: list[int]  # one per month


def nice_maximum(value: int) -> int:
    """Returns a round axis maximum at or above `value` (1, 2, 5 times a power of ten; at least 4)."""
    if value <= 4:
        return 4
    step = 1
    while True:
        for factor in (1, 2, 5):
            top = factor * step * 4
            if top >= value:
                return top
        step *= 10


def bar_chart(chart_id: str, title: str, description: str, months: list[str], series: list[Series]) -> Markup:
    """Returns an accessible grouped bar chart as inline SVG markup."""
    legend_height = LEGEND_ROW * ((len(series) + 1) // 2)
    height = HEIGHT + legend_height
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_maximum(max((v for s in series for v in s.values), default=0))
    parts = [
        f'<svg class="spgw-chart" id="{escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]
    for i in range(5):  # gridlines and y labels at 0, 1/4 ... top
        value = top * i // 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dde0"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#212b32">{value}</text>'
        )
    group_w = plot_w / max(1, len(months))
    bar_w = max(2.0, (group_w * 0.8) / max(1, len(series)))
    for m, month in enumerate(months):
        x0 = LEFT + m * group_w + group_w * 0.1
        for s, one in enumerate(series):
            value = one.values[m]
            bar_h = plot_h * value / top
            x, y = x0 + s * bar_w, TOP + plot_h - bar_h
            colour = PALETTE[s % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" height="{bar_h:.1f}" fill="{colour}">'
                f"<title>{escape(one.name)}, {escape(month)}: {value}</title></rect>"
            )
        label_x = LEFT + m * group_w + group_w / 2
        parts.append(
            f'<text x="{label_x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle" font-size="12" '
            f'fill="#212b32">{escape(month)}</text>'
        )
    parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}" stroke="#212b32"/>')
    for s, one in enumerate(series):  # the legend, two to a row, under the plot
        x = LEFT + (s % 2) * (plot_w / 2)
        y = HEIGHT - 16 + (s // 2) * LEGEND_ROW
        colour = PALETTE[s % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 11}" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{x + 20:.1f}" y="{y}" font-size="13" fill="#212b32">{escape(one.name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text above is escaped; the rest are numbers and constants)
