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
from vallum.models.features import DEFAULT_SPEC, FeatureSpec, featurize
from vallum.models.linear import PARANOIA_LEVELS, LinearModel
from vallum.models.windows import window_bounds
from vallum.text.normalize import normalize

WINDOW_CHARS = 128
WINDOW_STRIDE = 64
SUBTYPE_BITS = 16
SOURCE_GROUPS = ("request", "data")
TARGET_FPR = {1: 0.005, 2: 0.01, 3: 0.02, 4: 0.05}
MAX_BENIGN_WINDOWS = 16
MIN_CALIBRATION_ROWS = 40


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


def _training_windows(example: Example) -> list[str]:
    pieces: list[str] = []
    for view in view_texts(example.text):
        bounds = window_bounds(len(view), WINDOW_CHARS, WINDOW_STRIDE)
        if example.label and example.position and len(bounds) > 1:
            # Only the window holding the injection is labelled an attack.
            at = {"start": 0, "middle": len(bounds) // 2, "end": len(bounds) - 1}[example.position]
            bounds = [bounds[at]]
        elif not example.label and len(bounds) > MAX_BENIGN_WINDOWS:
            step = len(bounds) / MAX_BENIGN_WINDOWS
            bounds = [bounds[int(i * step)] for i in range(MAX_BENIGN_WINDOWS)]
        pieces += [view[a:b] for a, b in bounds]
    return pieces


def _runtime_windows(example: Example) -> list[str]:
    return [
        view[a:b]
        for view in view_texts(example.text)
        for a, b in window_bounds(len(view), WINDOW_CHARS, WINDOW_STRIDE)
    ]


def to_rows(examples: Sequence[Example], spec: FeatureSpec, runtime: bool = False, chunk: int = 4000) -> Rows:
    texts: list[str] = []
    owner: list[int] = []
    for index, example in enumerate(examples):
        pieces = _runtime_windows(example) if runtime else _training_windows(example)
        texts += pieces
        owner += [index] * len(pieces)
    blocks = []
    for start in range(0, len(texts), chunk):
        part = featurize(texts[start : start + chunk], spec)
        blocks.append(
            sparse.csr_matrix((part.values, part.indices, part.indptr), shape=(part.n_rows, spec.n_features))
        )
    return Rows(sparse.vstack(blocks, format="csr"), np.asarray(owner, dtype=np.int64))


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
    """Per source group and paranoia level: the margin that keeps every benign origin under its target FPR."""
    thresholds = np.zeros((len(SOURCE_GROUPS), len(PARANOIA_LEVELS)), dtype=np.float32)
    for g, group in enumerate(SOURCE_GROUPS):
        origins = sorted({e.origin for e in examples if e.label == 0 and e.source_group == group})
        for level in PARANOIA_LEVELS:
            candidates = []
            for origin in origins:
                mine = np.array(
                    [
                        m
                        for e, m in zip(examples, margins, strict=True)
                        if e.label == 0 and e.origin == origin and e.source_group == group
                    ]
                )
                if len(mine) >= MIN_CALIBRATION_ROWS:
                    candidates.append(np.quantile(mine, 1.0 - TARGET_FPR[level]))
            if not candidates:  # small runs: every benign row of the group (or of all groups) at once
                pooled = [
                    m
                    for e, m in zip(examples, margins, strict=True)
                    if e.label == 0 and (e.source_group == group or not origins)
                ]
                candidates.append(np.quantile(pooled, 1.0 - TARGET_FPR[level]))
            thresholds[g, level - 1] = max(candidates)
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
        window_chars=WINDOW_CHARS,
        window_stride=WINDOW_STRIDE,
        metadata={"c": c, "train_windows": int(rows.matrix.shape[0]), "target_fpr": TARGET_FPR},
    )
