"""The throughput chart: an inline SVG drawn on the server from a :class:`Throughput` (no
library, no script). Pure: no I/O.

One bar per minute, jobs completed (solid) with the jobs that died that minute stacked on
top (hatched), so the two differ by more than colour; a legend shows both swatches with
their names. Colours come from CSS variables (``--tp-completed``, ``--tp-dead``, the
page's text colour for axes), so the chart follows the light and dark themes. The SVG is
``role="img"`` with a ``<title>`` and a ``<desc>`` holding the same summary as the text
below it ("1,234 completed and 5 failed (dead) in the last hour, peak 80/min"); each bar
has a ``<title>`` with its minute and counts.
"""

from __future__ import annotations

from datetime import UTC

from markupsafe import Markup, escape

from ..queue.throughput import Throughput

WIDTH = 640
HEIGHT = 200
LEFT = 44  # room for the y axis's labels
RIGHT = 8
TOP = 12
BOTTOM = 34  # room for the x axis's labels
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def summary(data: Throughput) -> str:
    """One sentence saying what the chart shows."""
    text = (
        f"{data.completed:,} completed and {data.dead:,} failed (dead) in the last hour, "
        f"peak {data.peak:,}/min"
    )
    if data.uncounted:
        text += f"; {data.uncounted} older minute{'s' if data.uncounted != 1 else ''} not counted yet"
    return text + "."


def _number(value: float) -> str:
    return f"{value:,.1f}".rstrip("0").rstrip(".")


def chart_svg(data: Throughput, *, ident: str, scope: str) -> Markup:
    """The chart as SVG markup. ``ident``: a prefix unique within the page (for the ids of the
    title, description and pattern); ``scope``: what it covers ("all queues", "queue x")."""
    slots = max(len(data.minutes), 1)
    slot = PLOT_W / slots
    bar = max(slot * 0.72, 1.0)
    top = nice_ceiling(max((m.completed + m.dead for m in data.minutes if m is not None), default=0))
    scale = PLOT_H / top
    base = TOP + PLOT_H
    title = f"Throughput per minute, {scope}, last hour"
    said = summary(data)
    hatch = f"{ident}-hatch"
    out = [
        f'<svg class="throughput-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" data-completed="{data.completed}" '
        f'data-dead="{data.dead}" data-peak="{data.peak}" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(said)}</desc>',
        "<defs>",
        f'<pattern id="{hatch}" patternUnits="userSpaceOnUse" width="4" height="4" '
        'patternTransform="rotate(45)">',
        '<rect class="tp-dead-bg" width="4" height="4"/>',
        '<line class="tp-dead-line" x1="0" y1="0" x2="0" y2="4" stroke-width="2"/>',
        "</pattern>",
        "</defs>",
    ]
    # The y axis: gridlines and labels at 0, half and the top.
    for value in (0, top / 2, top):
        y = base - value * scale
        out.append(f'<line class="tp-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="tp-label" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}</text>'
        )
    out.append(
        f'<text class="tp-label" x="12" y="{TOP + PLOT_H / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + PLOT_H / 2:.1f})">jobs/min</text>'
    )
    # The bars.
    for i, minute in enumerate(data.minutes):
        if minute is None:
            continue
        x = LEFT + i * slot + (slot - bar) / 2
        label = f"{minute.start.astimezone(UTC):%H:%M} UTC: {minute.completed:,} completed, {minute.dead:,} failed (dead)"
        parts = [f'<g class="tp-minute"><title>{escape(label)}</title>']
        done_h = minute.completed * scale
        dead_h = minute.dead * scale
        if minute.completed:
            parts.append(
                f'<rect class="tp-completed" x="{x:.1f}" y="{base - done_h:.1f}" width="{bar:.1f}" height="{done_h:.1f}"/>'
            )
        if minute.dead:
            parts.append(
                f'<rect class="tp-dead" fill="url(#{hatch})" x="{x:.1f}" y="{base - done_h - dead_h:.1f}" '
                f'width="{bar:.1f}" height="{dead_h:.1f}"/>'
            )
        parts.append("</g>")
        if len(parts) > 2:
            out.append("".join(parts))
    # The x axis: its line and the times at its start, middle and end.
    out.append(f'<line class="tp-axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
    first = data.first.astimezone(UTC)
    middle = first + (data.now - first) / 2
    out.append(f'<text class="tp-label" x="{LEFT}" y="{base + 16}">{first:%H:%M}</text>')
    out.append(
        f'<text class="tp-label" x="{LEFT + PLOT_W / 2:.1f}" y="{base + 16}" text-anchor="middle">{middle:%H:%M}</text>'
    )
    out.append(f'<text class="tp-label" x="{WIDTH - RIGHT}" y="{base + 16}" text-anchor="end">now</text>')
    out.append(
        f'<text class="tp-label" x="{LEFT + PLOT_W / 2:.1f}" y="{base + 30}" text-anchor="middle">time (UTC), one bar a minute</text>'
    )
    out.append("</svg>")
    legend = (
        '<p class="tp-legend">'
        '<svg width="14" height="14" aria-hidden="true"><rect class="tp-completed" width="14" height="14"/></svg> '
        "Completed (solid) "
        f'<svg width="14" height="14" aria-hidden="true"><defs><pattern id="{hatch}-key" patternUnits="userSpaceOnUse" '
        'width="4" height="4" patternTransform="rotate(45)"><rect class="tp-dead-bg" width="4" height="4"/>'
        '<line class="tp-dead-line" x1="0" y1="0" x2="0" y2="4" stroke-width="2"/></pattern></defs>'
        f'<rect class="tp-dead" fill="url(#{hatch}-key)" width="14" height="14"/></svg> '
        "Failed, dead (hatched)</p>"
    )
    text = f'<p class="tp-summary" data-testid="throughput-summary">{escape(said)}</p>'
    return Markup("".join(out) + legend + text)  # built from escaped parts and numbers
