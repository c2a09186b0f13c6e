"""Hashed n-gram occurrences, shared by training and run time, so the two can never disagree.

A text's features are its lower-cased character 2..5-grams and word 1..2-grams, hashed into
2**bits buckets. Each occurrence keeps the position where it starts, which is what makes long texts
cheap: a window [a, b) of a text is "the n-grams that start in [a, b)", and its feature vector is
their bucket counts divided by sqrt(number of occurrences). A linear model then scores every window
of a text from two prefix sums (weights and counts by position), whatever the number and size of the
windows, so scoring stays linear in the text's length.

Everything is vectorised over a batch: the texts are joined into one array of UTF-32 code points,
character n-gram hashes are rolled with uint64 arithmetic (wrap-around is the modulus) and word
hashes are summed per token with `np.add.reduceat`. The hash constants are fixed, never Python's
salted `hash()`, so features are the same in every process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_ROLL = np.uint64(0x100000001B3)  # FNV prime: odd, so rolling never loses low bits
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_PAIR = np.uint64(0xBF58476D1CE4E5B9)
_CHAR_SALT = np.uint64(0x243F6A8885A308D3)
_WORD_SALT = np.uint64(0x13198A2E03707344)
_OFFSET_SHIFT = np.uint64(32)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What the featuriser extracts; stored in every model artefact so run time matches training."""

    bits: int = 20
    char_min: int = 2
    char_max: int = 5
    word_max: int = 2

    @property
    def n_features(self) -> int:
        return 1 << self.bits


DEFAULT_SPEC = FeatureSpec()


@dataclass(frozen=True, slots=True)
class NGrams:
    """Every n-gram occurrence of a batch: its position in the joined batch and its bucket.

    Text i occupies positions offsets[i] .. offsets[i] + len(text i) of the joined batch.
    """

    position: I64
    bucket: I64
    offsets: I64

    def text_of(self) -> I64:
        return np.searchsorted(self.offsets, self.position, side="right") - 1


def _spread(x: U64) -> U64:
    """Multiply-xorshift: cheap, and moves every input bit into the high bits that pick the bucket."""
    x = x * _GOLDEN
    return x ^ (x >> np.uint64(29))


def _build_word_table() -> npt.NDArray[np.bool_]:
    # Basic Multilingual Plane only; astral code points (emoji, rare CJK) never form words.
    table = np.zeros(0x10000, dtype=np.bool_)
    table[[i for i in range(0x10000) if chr(i).isalnum()]] = True
    table[0xFFFF] = False  # astral code points are clipped to U+FFFF by the lookup
    return table


_WORD_CHARS = _build_word_table()


def ngrams(texts: Sequence[str], spec: FeatureSpec = DEFAULT_SPEC) -> NGrams:
    """Hashed n-gram occurrences of every text, in one vectorised pass."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts), dtype=np.int64)
    if len(texts) > 1:
        offsets[1:] = np.cumsum(lengths[:-1] + 1)
    empty = NGrams(np.zeros(0, np.int64), np.zeros(0, np.int64), offsets)
    if not lengths.any():
        return empty
    # "\x00" separates texts; n-grams may not cross it, so a NUL inside a text only splits n-grams.
    codes = np.frombuffer("\x00".join(texts).lower().encode("utf-32-le"), dtype=np.uint32)
    total = len(codes)
    chars = codes.astype(np.uint64)
    boundary = np.flatnonzero(codes == 0) if len(texts) > 1 else np.zeros(0, dtype=np.int64)
    if len(boundary):
        # distance from each position to the next separator (or the end): an n-gram needs n of it
        next_sep = np.append(boundary, total)[np.searchsorted(boundary, np.arange(total), side="left")]
        room = next_sep - np.arange(total)

    hashes: list[U64] = []
    positions: list[I64] = []
    rolling = chars
    for n in range(2, spec.char_max + 1):
        width = total - n + 1
        if width <= 0:
            break
        rolling = rolling[:width] * _ROLL + chars[n - 1 :]
        if n < spec.char_min:
            continue
        if len(boundary):
            valid = np.flatnonzero(room[:width] >= n)
            hashes.append(rolling[valid] + _CHAR_SALT * np.uint64(n))
            positions.append(valid)
        else:  # one text (the run-time common case): every n-gram is inside it
            hashes.append(rolling + _CHAR_SALT * np.uint64(n))
            positions.append(np.arange(width, dtype=np.int64))

    # Words: a token hashes as the sum of its characters mixed with their offsets inside it.
    word_pos = np.flatnonzero(_WORD_CHARS[np.minimum(codes, 0xFFFF)])
    if len(word_pos) and spec.word_max >= 1:
        is_start = np.ones(len(word_pos), dtype=np.bool_)
        is_start[1:] = word_pos[1:] - word_pos[:-1] != 1
        token_starts = np.flatnonzero(is_start)
        inside = np.arange(len(word_pos)) - token_starts[np.cumsum(is_start) - 1]
        per_char = _spread((chars[word_pos] * _ROLL) ^ (inside.astype(np.uint64) << _OFFSET_SHIFT))
        tokens = np.add.reduceat(per_char, token_starts) ^ _WORD_SALT
        token_pos = word_pos[token_starts]
        hashes.append(tokens)
        positions.append(token_pos)
        if spec.word_max >= 2 and len(tokens) > 1:
            pairs = tokens[:-1] * _PAIR + tokens[1:]
            pair_pos = token_pos[:-1]
            if len(boundary):
                # a bigram may not join the last word of one text to the first of the next
                same = np.searchsorted(boundary, token_pos[1:]) == np.searchsorted(boundary, token_pos[:-1])
                pairs, pair_pos = pairs[same], pair_pos[same]
            hashes.append(pairs)
            positions.append(pair_pos)
    if not hashes:
        return empty
    shift = np.uint64(64 - spec.bits)
    bucket = (_spread(np.concatenate(hashes)) >> shift).astype(np.int64)
    return NGrams(np.concatenate(positions).astype(np.int64), bucket, offsets)


def window_rows(grams: NGrams, windows: I64) -> tuple[I64, I64, npt.NDArray[np.float32]]:
    """Sparse (row, bucket, value) triples of windows given as [start, end) pairs of joined positions.

    Used by training to materialise what run time computes from prefix sums; duplicates of one
    (row, bucket) are meant to be summed (scipy's COO -> CSR does that).
    """
    order = np.argsort(grams.position, kind="stable")
    position, bucket = grams.position[order], grams.bucket[order]
    lo = np.searchsorted(position, windows[:, 0], side="left")
    hi = np.searchsorted(position, windows[:, 1], side="left")
    counts = hi - lo
    rows = np.repeat(np.arange(len(windows), dtype=np.int64), counts)
    index = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    values = (1.0 / np.sqrt(np.maximum(counts, 1))).astype(np.float32)[rows]
    return rows, bucket[index], values
