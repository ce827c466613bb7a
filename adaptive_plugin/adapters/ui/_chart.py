"""The usage chart: daily overhead fee against model cost, stacked by a group (key source or
provider), as an inline SVG rendered on the server (no script, no external asset).

Each day has two bars: the overhead fee (solid) and the model cost (pale, outlined), each
stacked by group in the same colours. Amounts are integer micro-dollars; every rectangle has a
`<title>` with its exact figure, and the page carries the same figures as a table.

    >>> svg = daily_chart(["2026-01-01"], {"byok": ([120], [0])})   # doctest: +SKIP
"""

from __future__ import annotations

import math
from decimal import Decimal
from html import escape

PALETTE = ("#1f5fa8", "#c2571a", "#2e7d4f", "#8a3ea6", "#9c7a00", "#0f7c8c", "#b23a5a", "#4f5b66")
WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 78, 16, 16, 46


def usd(micros: int) -> str:
    """Micro-dollars as a dollar amount with as many decimals as it needs (at least two)."""
    value = Decimal(micros) / Decimal(1_000_000)
    text = f"{value:.6f}".rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{value:.2f}"
    return f"${text}"


def _nice_step(top: int) -> int:
    """A round step (1, 2 or 5 times a power of ten) giving about four ticks up to `top`."""
    raw = max(top, 1) / 4
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if mult * power >= raw:
            return int(mult * power) or 1
    return int(10 * power)


def daily_chart(days: list[str], groups: dict[str, tuple[list[int], list[int]]], *, title: str, chart_id: str = "usage-chart") -> str:
    """SVG markup: `groups` maps a group name to (fee per day, model cost per day), in micro-dollars."""
    names = list(groups)
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    fee_total = [sum(groups[g][0][d] for g in names) for d in range(len(days))]
    cost_total = [sum(groups[g][1][d] for g in names) for d in range(len(days))]
    top = max([*fee_total, *cost_total, 1])
    step = _nice_step(top)
    top = step * math.ceil(top / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(min(slot * 0.36, 18.0), 1.0)

    def y(value: int) -> float:
        return TOP + plot_h - plot_h * value / top

    desc = (f"{len(days)} days from {days[0]} to {days[-1]}: overhead fee {usd(sum(fee_total))}, "
            f"model cost {usd(sum(cost_total))}." if days else "No days in the range.")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
           f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
           f'<title id="{chart_id}-title">{escape(title)}</title>',
           f'<desc id="{chart_id}-desc">{escape(desc)}</desc>']
    for i in range(0, top + 1, step):
        yy = y(i)
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#d5d9de" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" fill="#333">{usd(i)}</text>')
    label_every = max(1, math.ceil(len(days) / 10))
    for d, day in enumerate(days):
        x0 = LEFT + slot * d + (slot - 2 * bar - 2) / 2
        for kind, x, opacity in (("overhead fee", x0, "1"), ("model cost", x0 + bar + 2, "0.35")):
            base = 0
            for name in names:
                value = groups[name][0 if kind == "overhead fee" else 1][d]
                if value <= 0:
                    continue
                y_top, y_bottom = y(base + value), y(base)
                out.append(
                    f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar:.1f}" height="{max(y_bottom - y_top, 0.5):.1f}" '
                    f'fill="{colour[name]}" fill-opacity="{opacity}" stroke="{colour[name]}" stroke-width="0.8">'
                    f'<title>{escape(day)} {escape(name)} {kind}: {usd(value)}</title></rect>')
                base += value
        if d % label_every == 0:
            cx = LEFT + slot * d + slot / 2
            out.append(f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#333">'
                       f'{escape(day[5:])}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333" stroke-width="1"/>')
    lx = LEFT
    for name in names:
        out.append(f'<rect x="{lx}" y="{HEIGHT - 16}" width="12" height="12" fill="{colour[name]}"/>'
                   f'<text x="{lx + 16}" y="{HEIGHT - 6}" font-size="12" fill="#222">{escape(name)}</text>')
        lx += 28 + 7 * len(name)
    out.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end" font-size="12" fill="#222">'
               'solid: overhead fee · pale: model cost</text>')
    out.append("</svg>")
    return "\n".join(out)
