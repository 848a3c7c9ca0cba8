"""Small time-series charts drawn as inline SVG on the server.

No chart library and nothing fetched by the browser: each chart is a few dozen
SVG elements sized by ``viewBox`` so it scales with the page, coloured by CSS
classes so light and dark mode both read well, with ``<title>`` tooltips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["Series", "time_chart"]

WIDTH = 640
HEIGHT = 200
_LEFT = 56  # room for y labels
_RIGHT = 12
_TOP = 12
_BOTTOM = 26  # room for x labels


@dataclass(slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    #: CSS class giving the colour: ``s1`` ... ``s4``, ``ok``, ``err``.
    css: str


def time_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    kind: str = "lines",
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    title: str = "",
    integer: bool = False,
) -> Markup:
    """A chart of ``series`` over the time buckets named by ``labels``.

    ``kind`` is ``"lines"`` (one polyline per series, gaps where a value is
    ``None``) or ``"bars"`` (series stacked in each bucket).  ``integer`` keeps
    gridlines on whole numbers, for counts.
    """
    n = len(labels)
    if n == 0:
        return Markup("")
    if kind == "bars":
        top = max((sum(s.values[i] or 0 for s in series) for i in range(n)), default=0)
    else:
        top = max((v for s in series for v in s.values if v is not None), default=0)
    ticks = _y_ticks(top, integer=integer)
    y_max = ticks[-1] or 1
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    step = plot_w / n

    def y(value: float) -> float:
        return _TOP + plot_h - value / y_max * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">'
    ]
    for tick in ticks:
        ty = y(tick)
        parts.append(
            f'<line class="gl" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="ylabel" x="{_LEFT - 6}" y="{ty + 4:.1f}">{escape(fmt(tick))}</text>'
        )
    every = max(1, round(n / 6))
    for i in range(0, n, every):
        x = _LEFT + step * (i + 0.5)
        label = escape(labels[i])
        parts.append(f'<text class="xlabel" x="{x:.1f}" y="{HEIGHT - 8}">{label}</text>')
    if kind == "bars":
        parts.extend(_bars(labels, series, step, y, fmt))
    else:
        parts.extend(_lines(labels, series, step, y, fmt))
    parts.append("</svg>")
    return Markup("".join(parts))


def _bars(
    labels: Sequence[str],
    series: Sequence[Series],
    step: float,
    y: Callable[[float], float],
    fmt: Callable[[float], str],
) -> list[str]:
    parts = []
    width = max(step * 0.72, 1)
    for i, label in enumerate(labels):
        base = 0.0
        x = _LEFT + step * i + (step - width) / 2
        for s in series:
            value = s.values[i] or 0
            if value <= 0:
                continue
            y0, y1 = y(base), y(base + value)
            parts.append(
                f'<rect class="cb {s.css}" x="{x:.1f}" y="{y1:.1f}" width="{width:.1f}" '
                f'height="{max(y0 - y1, 0.5):.1f}"><title>{escape(label)} · '
                f"{escape(s.name)}: {escape(fmt(value))}</title></rect>"
            )
            base += value
    return parts


def _lines(
    labels: Sequence[str],
    series: Sequence[Series],
    step: float,
    y: Callable[[float], float],
    fmt: Callable[[float], str],
) -> list[str]:
    parts = []
    for s in series:
        run: list[str] = []
        dots = []
        for i, value in enumerate(s.values):
            if value is None:
                if len(run) > 1:
                    parts.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
                run = []
                continue
            x = _LEFT + step * (i + 0.5)
            run.append(f"{x:.1f},{y(value):.1f}")
            dots.append(
                f'<circle class="dot {s.css}" cx="{x:.1f}" cy="{y(value):.1f}" r="2.6">'
                f"<title>{escape(labels[i])} · {escape(s.name)}: {escape(fmt(value))}</title>"
                "</circle>"
            )
        if len(run) > 1:
            parts.append(f'<polyline class="line {s.css}" points="{" ".join(run)}"/>')
        parts.extend(dots)
    return parts


def _y_ticks(top: float, target: int = 4, integer: bool = False) -> list[float]:
    """Round gridline values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = max(top / target, 1.0) if integer else top / target
    magnitude = 1.0
    while magnitude * 10 <= raw:
        magnitude *= 10
    while magnitude > raw:
        magnitude /= 10
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks
