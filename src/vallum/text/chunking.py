"""Overlapping windows over long texts, so a detector with a length limit still sees every region.

An attack shorter than `overlap` lies whole inside at least one window wherever it sits.
"""

from __future__ import annotations

from vallum.errors import VallumError


class ChunkingError(VallumError, ValueError):
    """Window size and overlap do not describe a forward-moving window."""


def chunks(text_len: int, size: int, overlap: int = 0) -> list[tuple[int, int]]:
    """Half-open (start, end) windows of at most `size` covering [0, text_len), each overlapping the
    previous one by at least `overlap`; the last window ends at text_len. Empty text gives [(0, 0)]."""
    if size <= 0:
        raise ChunkingError(f"chunk size must be positive, got {size}")
    if not 0 <= overlap < size:
        raise ChunkingError(f"chunk overlap must be in [0, size={size}), got {overlap}")
    if text_len <= size:
        return [(0, max(text_len, 0))]
    step = size - overlap
    windows = [(start, start + size) for start in range(0, text_len - size, step)]
    windows.append((text_len - size, text_len))
    return windows
