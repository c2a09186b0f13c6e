"""Detection quality on a labelled JSON-lines file: recall, false-positive rate, AUC, TPR at 1% FPR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The coarse dataset kinds (first segment of a row's `category`) and the vallum category that detects them.
DATASET_KIND_TO_CATEGORY = {
    "jailbreak": "injection",
    "prompt_injection": "injection",
    "indirect_injection": "injection",
    "indirect_injection_payload": "injection",
    "prompt_extraction": "injection",
    "pii": "pii",
    "secret": "secrets",
    "secrets": "secrets",
}


def category_of(row: dict[str, object], default: str = "injection") -> str:
    explicit = row.get("vallum_category")
    if isinstance(explicit, str):
        return explicit
    kind = str(row.get("category") or "").split("/")[0].split(":")[0]
    return DATASET_KIND_TO_CATEGORY.get(kind, default)


@dataclass(frozen=True, slots=True)
class CategoryQuality:
    category: str
    positives: int
    negatives: int
    recall: float
    false_positive_rate: float
    auc: float
    tpr_at_1pct_fpr: float


def quality(
    category: str, labels: Sequence[int], scores: Sequence[float], flagged: Sequence[bool]
) -> CategoryQuality:
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    hit = np.asarray(flagged, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    recall = float(hit[y].mean()) if pos else float("nan")
    fpr = float(hit[~y].mean()) if neg else float("nan")
    return CategoryQuality(category, pos, neg, recall, fpr, auc(y, s), tpr_at_fpr(y, s, 0.01))


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def tpr_at_fpr(y: np.ndarray, s: np.ndarray, max_fpr: float) -> float:
    """Share of positives caught at the lowest threshold whose false-positive rate is <= max_fpr."""
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    negatives = np.sort(s[~y])[::-1]
    allowed = int(np.floor(max_fpr * neg))
    # strictly above the (allowed+1)-th highest negative score keeps at most `allowed` false positives
    threshold = negatives[allowed] if allowed < neg else -np.inf
    return float((s[y] > threshold).mean())
