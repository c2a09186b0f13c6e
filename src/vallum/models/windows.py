"""Overlapping windows over a long text, so a short attack is not diluted by pages of benign text.

Local stand-in until `vallum.text.chunking` exists; the detector only needs (start, end) pairs.
"""

from __future__ import annotations


def window_bounds(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Half-open windows of `size` chars every `stride` chars; the last one ends at `length`.

    A text no longer than `size` is one window, so short prompts cost a single row.
    """
    if length <= size:
        return [(0, length)]
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return [(start, start + size) for start in starts]
