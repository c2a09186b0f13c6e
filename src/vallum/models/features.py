"""Hashed n-gram featuriser shared by training and run time, so the two can never disagree.

A batch of texts becomes one sparse matrix in CSR parts (indptr, indices, values): lower-cased
character 2..5-grams plus word 1..2-grams, hashed into 2**bits buckets, sublinear counts
(1 + log count), each row L2-normalised. Everything is vectorised over the whole batch: the texts
are joined into one array of UTF-32 code points, character n-gram hashes are rolled with uint64
arithmetic (wrap-around is the modulus) and word hashes are summed per token with `np.add.reduceat`.
The hashes are fixed constants, never Python's salted `hash()`, so features are the same in every
process. Training wraps the parts in a `scipy.sparse.csr_matrix`; run time uses them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]

_ROLL = np.uint64(0x100000001B3)  # FNV-1a prime: odd, so rolling never loses low bits
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_PAIR = np.uint64(0xBF58476D1CE4E5B9)
_CHAR_SALT = np.uint64(0x243F6A8885A308D3)
_WORD_SALT = np.uint64(0x13198A2E03707344)
_OFFSET_SHIFT = np.uint64(32)
# 1 + log(count), saturating at 255 repeats (beyond that more repeats say nothing new).
_SUBLINEAR_TF = (1.0 + np.log(np.maximum(np.arange(256), 1))).astype(np.float32)


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


@dataclass(frozen=True, slots=True)
class SparseRows:
    """CSR parts of a (rows x 2**bits) matrix; row i owns indices[indptr[i]:indptr[i+1]]."""

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> npt.NDArray[np.int64]:
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.indptr))


DEFAULT_SPEC = FeatureSpec()


def _spread(x: U64) -> U64:
    """Multiply-xorshift: cheap, and moves every input bit into the high bits that pick the bucket."""
    x = x * _GOLDEN
    return x ^ (x >> np.uint64(29))


def _build_word_table() -> npt.NDArray[np.bool_]:
    # Basic Multilingual Plane only; astral code points (emoji, rare CJK) never form words.
    table = np.zeros(0x10000, dtype=np.bool_)
    table[[i for i in range(0x10000) if chr(i).isalnum()]] = True
    return table


_WORD_CHARS = _build_word_table()
_WORD_CHARS[0xFFFF] = False  # astral code points are clipped to U+FFFF by the lookup


def featurize(texts: Sequence[str], spec: FeatureSpec = DEFAULT_SPEC) -> SparseRows:
    """Hashed, L2-normalised n-gram features of every text, in one vectorised pass."""
    n_rows = len(texts)
    lowered = [t.lower() for t in texts]
    lengths = np.fromiter((len(t) for t in lowered), dtype=np.int64, count=n_rows)
    if n_rows == 0 or not lengths.any():
        return SparseRows(np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    # "\x00" separates rows; row boundaries come from the lengths, so a NUL inside a text is harmless.
    codes = np.frombuffer("\x00".join(lowered).encode("utf-32-le"), dtype=np.uint32)
    total = len(codes)
    positions = np.arange(total, dtype=np.int64)
    if n_rows == 1:
        row_of = np.zeros(total, dtype=np.int64)
        remaining = total - positions
    else:
        row_end = np.cumsum(lengths + 1) - 1
        row_of = np.repeat(np.arange(n_rows, dtype=np.int64), lengths + 1)[:total]
        remaining = row_end[row_of] - positions

    bits = np.int64(spec.bits)
    shift = np.uint64(64 - spec.bits)

    # Character n-grams, rolled one order at a time; an n-gram may not run past its row's end.
    chars = codes.astype(np.uint64)
    hash_parts: list[U64] = []
    row_parts: list[npt.NDArray[np.int64]] = []
    rolling = chars
    for n in range(2, spec.char_max + 1):
        width = total - n + 1
        if width <= 0:
            break
        rolling = rolling[:width] * _ROLL + chars[n - 1 :]
        if n >= spec.char_min:
            valid = remaining[:width] >= n
            hash_parts.append(rolling[valid] + _CHAR_SALT * np.uint64(n))
            row_parts.append(row_of[:width][valid])

    # Words: a token hashes as the sum of its characters mixed with their offsets inside it.
    in_word = _WORD_CHARS[np.minimum(codes, 0xFFFF)]
    word_pos = np.flatnonzero(in_word)
    if len(word_pos) and spec.word_max >= 1:
        starts_flag = np.ones(len(word_pos), dtype=np.bool_)
        starts_flag[1:] = word_pos[1:] - word_pos[:-1] != 1
        token_starts = np.flatnonzero(starts_flag)
        offset = (positions[: len(word_pos)] - token_starts[np.cumsum(starts_flag) - 1]).astype(np.uint64)
        per_char = _spread((chars[word_pos] * _ROLL) ^ (offset << _OFFSET_SHIFT))
        tokens = np.add.reduceat(per_char, token_starts) ^ _WORD_SALT
        token_rows = row_of[word_pos[token_starts]]
        hash_parts.append(tokens)
        row_parts.append(token_rows)
        if spec.word_max >= 2 and len(tokens) > 1:
            same_row = token_rows[1:] == token_rows[:-1]
            hash_parts.append((tokens[:-1] * _PAIR + tokens[1:])[same_row])
            row_parts.append(token_rows[1:][same_row])
    if not hash_parts:
        return SparseRows(np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    buckets = (_spread(np.concatenate(hash_parts)) >> shift).astype(np.int64)
    all_keys = (np.concatenate(row_parts) << bits) | buckets
    keys, counts = _count_keys(all_keys, n_rows << spec.bits)
    rows = keys >> bits
    values = _SUBLINEAR_TF[np.minimum(counts, len(_SUBLINEAR_TF) - 1)]
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n_rows)).astype(np.float32)
    values /= norms[rows]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return SparseRows(indptr, keys & np.int64(spec.n_features - 1), values)


def _count_keys(
    keys: npt.NDArray[np.int64], key_bound: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Distinct keys in ascending order with their counts (np.unique, minus its generic overhead)."""
    # Sorting int32 is twice as fast as int64, and a prompt's keys fit comfortably.
    ordered = np.sort(keys.astype(np.int32) if key_bound < 2**31 else keys)
    first = np.ones(len(ordered), dtype=np.bool_)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(first)
    counts = np.empty(len(starts), dtype=np.int64)
    counts[:-1] = starts[1:] - starts[:-1]
    counts[-1] = len(ordered) - starts[-1]
    return ordered[starts].astype(np.int64), counts
