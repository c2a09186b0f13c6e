"""Choosing among overlapping spans: the longest, then the most confident, wins; ties go to the earliest."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def non_overlapping(
    items: Iterable[T], bounds: Callable[[T], tuple[int, int]], score: Callable[[T], float]
) -> list[T]:
    """Keep a maximal set of items whose [start, end) ranges do not overlap, in text order.

    Greedy by (length, score): a card number that also parses as a phone number keeps the card when the
    card span is longer or equally long and more confident. O(n log n + n * k) where k is the number of
    items kept so far that could touch (they are few: PII is sparse in text).
    """
    ranked = sorted(items, key=lambda it: (-(bounds(it)[1] - bounds(it)[0]), -score(it), bounds(it)[0]))
    kept: list[tuple[int, int, T]] = []
    for item in ranked:
        start, end = bounds(item)
        if end <= start:
            continue
        if any(start < k_end and k_start < end for k_start, k_end, _ in kept):
            continue
        kept.append((start, end, item))
    kept.sort(key=lambda k: k[0])
    return [item for _, _, item in kept]
