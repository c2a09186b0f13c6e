"""Turn examples into window rows, fit the heads, and calibrate thresholds: shared by build and LOSO."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from training.data import SUBTYPES, Example
from vallum.models.features import DEFAULT_SPEC, FeatureSpec, ngrams, window_rows
from vallum.models.linear import PARANOIA_LEVELS, LinearModel, runtime_windows, sentence_windows
from vallum.text.chunking import chunks
from vallum.text.normalize import normalize

WINDOW_SCALES = ((256, 128), (1024, 512))
SUBTYPE_BITS = 16
SOURCE_GROUPS = ("request", "data")
TARGET_FPR = {1: 0.005, 2: 0.01, 3: 0.02, 4: 0.05}
MAX_WINDOWS_PER_SCALE = 16


@dataclass
class Rows:
    """Window rows of a set of examples, with the example each row came from."""

    matrix: sparse.csr_matrix
    owner: npt.NDArray[np.int64]


def view_texts(text: str) -> list[str]:
    seen: list[str] = []
    for view in normalize(text).views:
        if view.text.strip() and view.text not in seen:
            seen.append(view.text)
    return seen


def _training_windows(example: Example, text: str) -> list[tuple[int, int]]:
    """Run-time windows, except that a long document with an injection at a known place contributes only
    the windows at that place (the rest is not an attack), attacks contribute no single sentences (most
    sentences of a jailbreak are harmless alone), and long texts are subsampled."""
    length = len(text)
    chosen: set[tuple[int, int]] = set()
    located = _payload_span(example, text)
    if located is not None:
        start, end = located
        windows = runtime_windows(text, WINDOW_SCALES)
        # the smallest windows that hold the whole injected instruction, and the sentences inside it
        holding = [(a, b) for a, b in windows if a <= start and end <= b]
        inside = [
            (a, b) for a, b in sentence_windows(text, WINDOW_SCALES[0][0]) if start <= a and b <= end + 1
        ]
        shortest = min((b - a for a, b in holding), default=0)
        return sorted({w for w in holding if w[1] - w[0] == shortest} | set(inside))
    if not example.label and length > WINDOW_SCALES[0][0]:
        sentences = sentence_windows(text, WINDOW_SCALES[0][0])
        if len(sentences) > MAX_WINDOWS_PER_SCALE:
            step = len(sentences) / MAX_WINDOWS_PER_SCALE
            sentences = [sentences[int(i * step)] for i in range(MAX_WINDOWS_PER_SCALE)]
        chosen.update(sentences)
    for size, stride in WINDOW_SCALES:
        bounds = chunks(length, size, size - stride)
        if example.label and example.position and len(bounds) > 1:
            at = {"start": 0, "middle": len(bounds) // 2, "end": len(bounds) - 1}[example.position]
            bounds = [bounds[at]]
        elif len(bounds) > MAX_WINDOWS_PER_SCALE:
            step = len(bounds) / MAX_WINDOWS_PER_SCALE
            bounds = [bounds[int(i * step)] for i in range(MAX_WINDOWS_PER_SCALE)]
        chosen.update(bounds)
    return sorted(chosen)


def _payload_span(example: Example, text: str) -> tuple[int, int] | None:
    """Where the example's injected instruction sits in this view of it, when the data says which it is."""
    if not example.payload:
        return None
    views = normalize(example.payload).views
    for view in views:
        at = text.find(view.text)
        if at >= 0 and view.text:
            return at, at + len(view.text)
    return None


def to_rows(examples: Sequence[Example], spec: FeatureSpec, runtime: bool = False, chunk: int = 2000) -> Rows:
    """Feature rows of every window of every view of the examples, in the exact form run time scores."""
    blocks = []
    owners: list[npt.NDArray[np.int64]] = []
    for first in range(0, len(examples), chunk):
        part = examples[first : first + chunk]
        views = [(i, view) for i, e in enumerate(part, start=first) for view in view_texts(e.text)]
        grams = ngrams([v for _, v in views], spec)
        bounds: list[tuple[int, int]] = []
        owner: list[int] = []
        for k, (i, view) in enumerate(views):
            offset = int(grams.offsets[k])
            pieces = runtime_windows(view, WINDOW_SCALES) if runtime else _training_windows(examples[i], view)
            bounds += [(offset + a, offset + b) for a, b in pieces]
            owner += [i] * len(pieces)
        rows, buckets, values = window_rows(grams, np.asarray(bounds, dtype=np.int64).reshape(-1, 2))
        blocks.append(sparse.csr_matrix((values, (rows, buckets)), shape=(len(bounds), spec.n_features)))
        owners.append(np.asarray(owner, dtype=np.int64))
    return Rows(sparse.vstack(blocks, format="csr"), np.concatenate(owners))


def _weights(examples: Sequence[Example], owner: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Each origin weighs the square root of its size, split evenly between the labels it has.

    The even split matters for mixed origins (BIPIA tables, InjecAgent tool outputs): otherwise the
    document format itself, mostly seen with an injection inside, would become the signal.
    """
    origins = [examples[i].origin for i in owner]
    labels = np.array([examples[i].label for i in owner])
    per_origin = Counter(origins)
    per_cell = Counter(zip(origins, labels.tolist(), strict=True))
    labels_of = Counter(origin for origin, _ in per_cell)
    weights = np.array(
        [
            per_origin[o] ** 0.5 / labels_of[o] / per_cell[(o, y)]
            for o, y in zip(origins, labels.tolist(), strict=True)
        ]
    )
    for label in (0, 1):
        weights[labels == label] /= weights[labels == label].sum()
    return weights * len(weights) / 2


def fit_binary(
    examples: Sequence[Example], rows: Rows, c: float, max_iter: int = 400
) -> tuple[npt.NDArray[np.float32], float]:
    labels = np.array([examples[i].label for i in rows.owner])
    model = LogisticRegression(C=c, max_iter=max_iter, tol=1e-5, solver="lbfgs")
    model.fit(rows.matrix, labels, sample_weight=_weights(examples, rows.owner))
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def fit_subtype(
    examples: Sequence[Example], rows: Rows
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    attack = np.array([examples[i].label == 1 for i in rows.owner])
    matrix = rows.matrix[attack].tocoo()
    folded = sparse.csr_matrix(
        (matrix.data, (matrix.row, matrix.col & ((1 << SUBTYPE_BITS) - 1))),
        shape=(matrix.shape[0], 1 << SUBTYPE_BITS),
    )
    labels = np.array([SUBTYPES.index(examples[i].subtype) for i in rows.owner[attack]])
    model = LogisticRegression(C=4.0, max_iter=300, solver="lbfgs")
    model.fit(folded, labels)
    weights = np.zeros((len(SUBTYPES), 1 << SUBTYPE_BITS), dtype=np.float32)
    bias = np.full(len(SUBTYPES), -1e4, dtype=np.float32)  # classes absent from training never win
    weights[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return weights, bias


def text_margins(
    weights: npt.NDArray[np.float32], bias: float, rows: Rows, n_texts: int
) -> npt.NDArray[np.float64]:
    """The run-time score of each text: its best window over all views."""
    window = rows.matrix @ weights.astype(np.float64) + bias
    best = np.full(n_texts, -np.inf)
    np.maximum.at(best, rows.owner, window)
    return best


def calibrate(examples: Sequence[Example], margins: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Per source group and paranoia level: the margin above which TARGET_FPR of benign text lies.

    Benign origins of a group are pooled with equal weight each, so one large source does not set the
    line alone, and neither does the single most extreme row of a small one (a 0.5 % quantile of 200
    rows is that source's maximum, which made earlier thresholds far too strict).
    """
    thresholds = np.zeros((len(SOURCE_GROUPS), len(PARANOIA_LEVELS)), dtype=np.float32)
    for g, group in enumerate(SOURCE_GROUPS):
        benign = [
            (e.origin, e.source_group, m) for e, m in zip(examples, margins, strict=True) if e.label == 0
        ]
        mine = [(o, m) for o, grp, m in benign if grp == group] or [(o, m) for o, _, m in benign]
        sizes = Counter(o for o, _ in mine)
        values = np.array([m for _, m in mine])
        weights = np.array([1.0 / sizes[o] for o, _ in mine]) / len(sizes)
        order = np.argsort(-values, kind="stable")
        above = np.cumsum(weights[order])  # share of (equally weighted) benign text at or above each value
        for level in PARANOIA_LEVELS:
            k = int(np.searchsorted(above, TARGET_FPR[level], side="right"))
            thresholds[g, level - 1] = values[order[min(k, len(order) - 1)]]
    # Documents and tool output should carry no instructions at all, so they are never judged more
    # leniently than a user's own request, whatever benign documents that read like tasks do to the quantile.
    request, data = SOURCE_GROUPS.index("request"), SOURCE_GROUPS.index("data")
    thresholds[data] = np.minimum(thresholds[data], thresholds[request])
    return thresholds


def train_model(examples: Sequence[Example], spec: FeatureSpec = DEFAULT_SPEC, c: float = 2.0) -> LinearModel:
    """Fit on the training split, calibrate on the held-out benign split, return the shippable model."""
    train = [e for e in examples if not e.holdout]
    held = [e for e in examples if e.holdout and e.label == 0]
    rows = to_rows(train, spec)
    weights, bias = fit_binary(train, rows, c)
    subtype_weights, subtype_bias = fit_subtype(train, rows)
    held_rows = to_rows(held, spec, runtime=True)
    thresholds = calibrate(held, text_margins(weights, bias, held_rows, len(held)))
    return LinearModel(
        spec=spec,
        weights=weights,
        bias=bias,
        subtype_labels=SUBTYPES,
        subtype_bits=SUBTYPE_BITS,
        subtype_weights=subtype_weights,
        subtype_bias=subtype_bias,
        source_groups=SOURCE_GROUPS,
        thresholds=thresholds,
        window_scales=WINDOW_SCALES,
        metadata={"c": c, "train_windows": int(rows.matrix.shape[0]), "target_fpr": TARGET_FPR},
    )
