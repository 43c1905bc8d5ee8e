"""The throughput chart's drawing (dashboard.throughput_chart): pure, no database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from conveyor.dashboard.throughput_chart import HEIGHT, PLOT_H, TOP, chart_svg, nice_ceiling, summary
from conveyor.queue.throughput import MINUTES, Minute, Throughput

NOW = datetime(2026, 12, 7, 16, 42, 30, tzinfo=UTC)
FIRST = datetime(2026, 12, 7, 15, 43, tzinfo=UTC)


def hour(counts: dict[int, tuple[int, int]], *, uncounted: frozenset[int] = frozenset()) -> Throughput:
    minutes: list[Minute | None] = []
    for i in range(MINUTES):
        start = FIRST + timedelta(minutes=i)
        if i in uncounted:
            minutes.append(None)
        else:
            completed, dead = counts.get(i, (0, 0))
            minutes.append(Minute(start, completed, dead))
    return Throughput(None, NOW, tuple(minutes))


def bars(svg: str, kind: str) -> list[tuple[float, float]]:
    """(y, height) of each bar of a kind (tp-completed, tp-dead), legend swatches left out."""
    found = re.findall(
        rf'<rect class="{kind}"(?: fill="[^"]+")? x="[^"]+" y="([^"]+)" width="[^"]+" height="([^"]+)"/>', svg
    )
    return [(float(y), float(h)) for y, h in found]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 5),
        (5, 5),
        (6, 10),
        (11, 20),
        (80, 100),
        (101, 200),
        (5000, 5000),
        (5001, 10000),
    ],
)
def test_the_scale_tops_at_a_round_number(value: int, expected: int) -> None:
    assert nice_ceiling(value) == expected


def test_an_empty_hour_draws_no_bars_and_says_so() -> None:
    data = hour({})
    svg = str(chart_svg(data, ident="t", scope="all queues"))
    assert bars(svg, "tp-completed") == []
    assert bars(svg, "tp-dead") == []
    assert summary(data) == "0 completed and 0 failed (dead) in the last hour, peak 0/min."
    assert '<desc id="t-desc">0 completed and 0 failed (dead) in the last hour, peak 0/min.</desc>' in svg
    assert 'role="img"' in svg
    assert 'aria-labelledby="t-title t-desc"' in svg
    assert '<title id="t-title">Throughput per minute, all queues, last hour</title>' in svg
    # The axis still runs 0 to 1, labelled, with its times (in UTC) and "now".
    assert ">jobs/min</text>" in svg
    assert ">15:43</text>" in svg
    assert ">now</text>" in svg


def test_one_busy_minute_fills_the_plot_and_its_dead_jobs_stack_hatched_on_top() -> None:
    data = hour({59: (8, 2)})
    svg = str(chart_svg(data, ident="t", scope="queue q"))
    # Top of the scale: 10 (8 + 2): the stack reaches the plot's top.
    ((y_done, h_done),) = bars(svg, "tp-completed")
    ((y_dead, h_dead),) = bars(svg, "tp-dead")
    assert h_done == pytest.approx(PLOT_H * 0.8, abs=0.1)
    assert h_dead == pytest.approx(PLOT_H * 0.2, abs=0.1)
    assert y_dead == pytest.approx(TOP, abs=0.1)
    assert y_done == pytest.approx(TOP + PLOT_H * 0.2, abs=0.1)
    assert y_done + h_done == pytest.approx(TOP + PLOT_H, abs=0.1)
    assert TOP + PLOT_H < HEIGHT
    assert 'fill="url(#t-hatch)"' in svg  # the dead part is a pattern, not only another colour
    assert ">10</text>" in svg
    assert ">5</text>" in svg  # the y axis's labels
    assert "<title>16:42 UTC: 8 completed, 2 failed (dead)</title>" in svg
    assert summary(data) == "8 completed and 2 failed (dead) in the last hour, peak 8/min."
    assert 'data-completed="8"' in svg
    assert 'data-dead="2"' in svg


def test_bars_scale_against_the_busiest_minute_and_the_totals_add_up() -> None:
    data = hour({0: (1_000, 0), 30: (500, 0), 59: (250, 3)})
    svg = str(chart_svg(data, ident="t", scope="all queues"))
    heights = [h for _, h in bars(svg, "tp-completed")]
    assert heights == pytest.approx([PLOT_H, PLOT_H / 2, PLOT_H / 4], abs=0.1)
    assert summary(data) == "1,750 completed and 3 failed (dead) in the last hour, peak 1,000/min."
    # Bars are in time order, left to right.
    xs = [float(x) for x in re.findall(r'<rect class="tp-completed" x="([^"]+)"', svg)]
    assert xs == sorted(xs)
    assert len(xs) == 3


def test_minutes_not_counted_yet_are_left_blank_and_said() -> None:
    data = hour({59: (4, 0)}, uncounted=frozenset(range(0, 45)))
    assert data.uncounted == 45
    assert summary(data) == (
        "4 completed and 0 failed (dead) in the last hour, peak 4/min; 45 older minutes not counted yet."
    )
    assert len(bars(str(chart_svg(data, ident="t", scope="all queues")), "tp-completed")) == 1


def test_text_is_escaped() -> None:
    svg = str(chart_svg(hour({}), ident="t", scope="queue <b>&"))
    assert "queue &lt;b&gt;&amp;" in svg
    assert "<b>" not in svg
