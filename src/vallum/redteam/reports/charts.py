"""Geometry for the report's inline SVG charts: one horizontal stacked bar per category or suite.

Only numbers are computed here; the template writes the SVG with autoescaping, so labels stay text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vallum.redteam.catalogue import OWASP_2025
from vallum.redteam.results import Counts

WIDTH = 760
LABEL_WIDTH = 250
RATE_WIDTH = 110
ROW_HEIGHT = 26
BAR_HEIGHT = 16
_TOP = 6


@dataclass(frozen=True, slots=True)
class Segment:
    x: float
    width: float
    series: str  # succeeded, defended, error
    count: int


@dataclass(frozen=True, slots=True)
class Row:
    y: float
    label: str
    rate: float
    counts: Counts
    segments: tuple[Segment, ...]

    @property
    def tip(self) -> str:
        c = self.counts
        return f"{self.label}: {c.succeeded} succeeded, {c.defended} defended, {c.errors} errors"


@dataclass(frozen=True, slots=True)
class BarChart:
    title: str
    rows: tuple[Row, ...]
    width: int = WIDTH
    label_width: int = LABEL_WIDTH
    bar_width: int = WIDTH - LABEL_WIDTH - RATE_WIDTH
    bar_height: int = BAR_HEIGHT

    @property
    def height(self) -> int:
        return _TOP * 2 + ROW_HEIGHT * max(1, len(self.rows))


def label_for(key: str, owasp: bool) -> str:
    if owasp and key in OWASP_2025:
        return f"{key} {OWASP_2025[key]}"
    return key


def bar_chart(title: str, groups: Mapping[str, Counts], *, owasp: bool = False) -> BarChart:
    span = WIDTH - LABEL_WIDTH - RATE_WIDTH
    rows = []
    for index, (key, counts) in enumerate(groups.items()):
        x = float(LABEL_WIDTH)
        segments = []
        for series, count in (
            ("succeeded", counts.succeeded),
            ("defended", counts.defended),
            ("error", counts.errors),
        ):
            width = span * count / counts.attempts if counts.attempts else 0.0
            if width:
                segments.append(Segment(round(x, 2), round(width, 2), series, count))
            x += width
        y = _TOP + index * ROW_HEIGHT
        rows.append(Row(y, label_for(key, owasp), counts.rate, counts, tuple(segments)))
    return BarChart(title, tuple(rows))
