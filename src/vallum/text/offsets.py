"""Offset maps: where each character of a derived text came from in the text it was derived from.

A map is a sorted list of pieces. A *linear* piece says "view characters [v, v+n) are base characters
[b, b+n)"; a *block* piece says "every view character of this piece came from the whole base range
[b, e)" (a decoded payload, a collapsed whitespace run, an NFKC expansion). Ordinary text needs one piece
per edit, not one entry per character, so maps stay small and are cheap to build. Maps chain: a view
derived from another view keeps that view's map as its parent and resolves lazily, so nothing is composed
until a detector asks for a span.

Invariant (kept by MapBuilder's callers and checked by the property tests): piece starts and ends never
decrease, so the span of a range is just (start of its first character, end of its last character).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence

_ARRAY_FROM = 64


class OffsetMap:
    """Maps positions of a derived text to ranges of its base text (and, through parents, the original)."""

    __slots__ = ("_base_ends", "_base_len", "_base_starts", "_linear", "_view_len", "_view_starts", "parent")

    def __init__(
        self,
        view_starts: Sequence[int],
        base_starts: Sequence[int],
        base_ends: Sequence[int],
        linear: bytes,
        view_len: int,
        base_len: int,
        parent: OffsetMap | None = None,
    ) -> None:
        self._view_starts = view_starts
        self._base_starts = base_starts
        self._base_ends = base_ends
        self._linear = linear
        self._view_len = view_len
        self._base_len = base_len
        self.parent = parent

    def __len__(self) -> int:
        return self._view_len

    def _char(self, i: int) -> tuple[int, int]:
        k = bisect_right(self._view_starts, i) - 1
        start = self._base_starts[k]
        if self._linear[k]:
            start += i - self._view_starts[k]
            return start, start + 1
        return start, self._base_ends[k]

    def base_range(self, start: int, end: int) -> tuple[int, int]:
        """The base range that view characters [start, end) came from; start <= end <= len(view)."""
        if start < end:
            return self._char(start)[0], self._char(end - 1)[1]
        if start < self._view_len:
            point = self._char(start)[0]
            return point, point
        return self._base_len, self._base_len

    def resolve(self, start: int, end: int) -> tuple[int, int]:
        """Like base_range, but followed through every parent down to the original text."""
        lo, hi = self.base_range(start, end)
        if self.parent is not None:
            return self.parent.resolve(lo, hi)
        return lo, hi


class MapBuilder:
    """Builds a derived text and its OffsetMap from pieces appended in base order."""

    __slots__ = (
        "_base_ends",
        "_base_len",
        "_base_starts",
        "_linear",
        "_parent",
        "_parts",
        "_view_len",
        "_view_starts",
    )

    def __init__(self, base_len: int, parent: OffsetMap | None = None) -> None:
        self._base_len = base_len
        self._parent = parent
        self._parts: list[str] = []
        # Plain lists while building (appends are cheapest there); arrays once built.
        self._view_starts: list[int] = []
        self._base_starts: list[int] = [-1]  # sentinels: no piece yet, so order checks need no branch
        self._base_ends: list[int] = [-1]
        self._linear: list[int] = [0]
        self._view_len = 0

    def linear(self, text: str, base_start: int) -> None:
        """Append text whose character i came from base character base_start + i."""
        if not text:
            return
        self._parts.append(text)
        end = base_start + len(text)
        if self._linear[-1] and self._base_ends[-1] == base_start:
            self._base_ends[-1] = end
        else:
            self._add(base_start, end, 1)
        self._view_len += len(text)

    def block(self, text: str, base_start: int, base_end: int) -> None:
        """Append text that as a whole came from base[base_start:base_end]."""
        if not text:
            return
        self._parts.append(text)
        self._add(base_start, base_end, 0)
        self._view_len += len(text)

    def _add(self, base_start: int, base_end: int, linear: int) -> None:
        if base_start < self._base_starts[-1] or base_end < self._base_ends[-1]:
            raise ValueError(
                f"offset pieces must be appended in base order: [{base_start}, {base_end}) after "
                f"[{self._base_starts[-1]}, {self._base_ends[-1]})"
            )
        self._view_starts.append(self._view_len)
        self._base_starts.append(base_start)
        self._base_ends.append(base_end)
        self._linear.append(linear)

    def build(self) -> tuple[str, OffsetMap | None]:
        """The text and its map; the map is the parent itself (or None) when nothing moved."""
        text = "".join(self._parts)
        pieces = len(self._view_starts)
        identity = (
            pieces == 1
            and self._linear[1]
            and self._base_starts[1] == 0
            and self._base_ends[1] == self._base_len
        ) or (pieces == 0 and self._base_len == 0)
        if identity:
            return text, self._parent
        offsets = OffsetMap(
            _compact(self._view_starts),
            _compact(self._base_starts[1:]),
            _compact(self._base_ends[1:]),
            bytes(self._linear[1:]),
            self._view_len,
            self._base_len,
            self._parent,
        )
        return text, offsets


def replace_spans(
    text: str, edits: list[tuple[int, int, str]], parent: OffsetMap | None = None
) -> tuple[str, OffsetMap | None]:
    """text with each [start, end) of edits (sorted, disjoint) replaced by its string ('' removes).

    Everything outside the edits is copied one for one. The hot path of whitespace collapsing and
    invisible-character removal, so it builds the map directly instead of through MapBuilder.
    """
    if not edits:
        return text, parent
    parts: list[str] = []
    view_starts: list[int] = []
    base_starts: list[int] = []
    base_ends: list[int] = []
    linear: list[int] = []
    view_len = 0
    done = 0
    for start, end, replacement in edits:
        if start > done:
            parts.append(text[done:start])
            view_starts.append(view_len)
            base_starts.append(done)
            base_ends.append(start)
            linear.append(1)
            view_len += start - done
        if replacement:
            parts.append(replacement)
            view_starts.append(view_len)
            base_starts.append(start)
            base_ends.append(end)
            linear.append(0)
            view_len += len(replacement)
        done = end
    n = len(text)
    if n > done:
        parts.append(text[done:])
        view_starts.append(view_len)
        base_starts.append(done)
        base_ends.append(n)
        linear.append(1)
        view_len += n - done
    offsets = OffsetMap(
        _compact(view_starts), _compact(base_starts), _compact(base_ends), bytes(linear), view_len, n, parent
    )
    return "".join(parts), offsets


def _compact(values: list[int]) -> Sequence[int]:
    """Small maps as tuples (cheapest to make), large ones as 8-byte arrays (a third of the memory)."""
    return tuple(values) if len(values) < _ARRAY_FROM else array("q", values)
