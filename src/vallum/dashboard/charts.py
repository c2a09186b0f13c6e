"""Chart geometry for inline SVG: stacked columns, horizontal bars and a line, drawn by one template macro;
and sparklines (a value over time, small, without axes), drawn by another.

Only numbers are computed here; the template writes the SVG with autoescaping, so labels that come from
traffic (categories, identities) stay text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 960, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 24  # room for axis labels
_GAP = 0.2  # share of a column's slot left empty
_MAX_X_LABELS = 8


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    series: str  # a CSS class suffix: the action, or "bar"
    label: str  # the bucket or item the rectangle stands for
    value: float

    @property
    def tip(self) -> str:
        return f"{self.label}: {self.series} {_number(self.value)}"


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"  # SVG text-anchor


@dataclass(frozen=True, slots=True)
class Rule:
    """A horizontal grid line."""

    x1: float
    x2: float
    y: float


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str
    value: float

    @property
    def tip(self) -> str:
        return f"{self.label}: {self.value:.1%}"


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: int
    height: int
    rects: tuple[Rect, ...] = ()
    labels: tuple[Label, ...] = ()
    grid: tuple[Rule, ...] = ()
    points: tuple[Point, ...] = ()

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True, slots=True)
class _Frame:
    """The plot area inside a chart of `width` x `height`, with room for the axis labels."""

    width: int
    height: int
    slots: int  # columns or points along x

    @property
    def bottom(self) -> float:
        return float(self.height - _BOTTOM)

    @property
    def plot_h(self) -> float:
        return float(self.height - _TOP - _BOTTOM)

    @property
    def slot(self) -> float:
        return (self.width - _LEFT - _RIGHT) / max(1, self.slots)

    def x(self, i: int) -> float:
        return _LEFT + i * self.slot

    def axes(self, top: float, buckets: Sequence[str], *, share: bool) -> tuple[Label, ...]:
        y_labels = [
            Label(_LEFT - 6, self.bottom - self.plot_h * k / 4 + 4, _tick(top * k / 4, top, share), "end")
            for k in range(5)
        ]
        step = max(1, math.ceil(len(buckets) / _MAX_X_LABELS))
        x_labels = [
            Label(self.x(i) + self.slot / 2, self.height - 6, bucket)
            for i, bucket in enumerate(buckets)
            if i % step == 0
        ]
        return (*y_labels, *x_labels)

    def grid(self) -> tuple[Rule, ...]:
        return tuple(Rule(_LEFT, self.width - _RIGHT, self.bottom - self.plot_h * k / 4) for k in range(5))


def columns(
    title: str,
    buckets: Sequence[str],
    series: Mapping[str, Sequence[int]],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """One column per bucket, stacked by series in the order given (e.g. allow, flag, redact, block)."""
    frame = _Frame(width, height, len(buckets))
    totals = [sum(values[i] for values in series.values()) for i in range(len(buckets))]
    top = _axis_top(max(totals, default=0), share=False)
    rects: list[Rect] = []
    for i, bucket in enumerate(buckets):
        y = frame.bottom
        for name, values in series.items():
            if not values[i]:
                continue
            h = frame.plot_h * values[i] / top
            y -= h
            x = frame.x(i) + frame.slot * _GAP / 2
            rects.append(Rect(x, y, frame.slot * (1 - _GAP), h, name, bucket, values[i]))
    return Chart(title, width, height, tuple(rects), frame.axes(top, buckets, share=False), frame.grid())


def line(
    title: str,
    buckets: Sequence[str],
    values: Sequence[float | None],
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """A share (0..1) per bucket as a line; buckets without a value (no traffic) leave no point."""
    frame = _Frame(width, height, len(buckets))
    top = _axis_top(max((v for v in values if v is not None), default=0.0), share=True)
    points = tuple(
        Point(frame.x(i) + frame.slot / 2, frame.bottom - frame.plot_h * value / top, bucket, value)
        for i, (bucket, value) in enumerate(zip(buckets, values, strict=True))
        if value is not None
    )
    return Chart(
        title, width, height, labels=frame.axes(top, buckets, share=True), grid=frame.grid(), points=points
    )


def bars(title: str, items: Sequence[tuple[str, int]], width: int = 520) -> Chart:
    """Horizontal bars, largest first as given, with the item's name and count beside each."""
    row, label_w, value_w = 22, 170, 50
    height = max(row, row * len(items)) + 4
    top = max((n for _, n in items), default=0) or 1
    span = width - label_w - value_w
    rects, labels = [], []
    for i, (name, count) in enumerate(items):
        y = 2 + i * row
        bar_w = span * count / top
        rects.append(Rect(label_w, y + 3, bar_w, row - 6, "bar", name, count))
        labels.append(Label(label_w - 6, y + row / 2 + 4, _shorten(name, 26), "end"))
        labels.append(Label(label_w + bar_w + 4, y + row / 2 + 4, _number(count), "start"))
    return Chart(title, width, height, tuple(rects), tuple(labels))


@dataclass(frozen=True, slots=True)
class Spark:
    title: str
    width: int
    height: int
    points: tuple[tuple[float, float], ...]  # (x, y) of each bucket that has a value, left to right
    latest: float
    peak: float
    count: int  # readings drawn

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


def sparkline(
    title: str,
    readings: Sequence[tuple[float, float]],
    start: float,
    end: float,
    *,
    top: float | None = None,
    width: int = 240,
    height: int = 32,
    buckets: int = 96,
) -> Spark:
    """(time, value) readings from `start` to `end` as a line: the peak of each of `buckets` equal slices of
    time, so a day of one reading a minute stays a few hundred bytes of SVG; slices without a reading leave
    no point. The line's top is `top` (1 for a score, so identities compare) or else the peak."""
    peaks: dict[int, float] = {}
    span = max(end - start, 1e-9)
    for when, value in readings:
        slot = min(buckets - 1, max(0, int((when - start) / span * buckets)))
        peaks[slot] = max(value, peaks.get(slot, value))
    peak = max((v for _, v in readings), default=0.0)
    scale = top if top is not None else (peak or 1.0)
    step = (width - 4) / max(1, buckets - 1)
    points = tuple(
        (2 + slot * step, height - 2 - (height - 4) * min(value, scale) / scale)
        for slot, value in sorted(peaks.items())
    )
    latest = max(readings, key=lambda r: r[0])[1] if readings else 0.0
    return Spark(title, width, height, points, latest, peak, len(readings))


def _axis_top(value: float, *, share: bool) -> float:
    """The top of a 4-step axis at or above `value`, each step 1, 2 or 5 times a power of ten; counts step
    by whole numbers, shares (0..1) stop at 100%."""
    if value <= 0:
        return 1.0 if share else 4.0
    quarter = value / 4
    power = 10.0 ** math.floor(math.log10(quarter))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= quarter)
    return min(1.0, 4 * step) if share else 4 * max(1.0, step)


def _tick(value: float, top: float, share: bool) -> str:
    if not share:
        return _number(value)
    return f"{value:.1%}" if top < 0.04 else f"{value:.0%}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
