"""Run time of the shipped linear classifiers: load an `.npz` artefact and score windows of n-gram occurrences.

An artefact holds a binary head (is this text an injection or jailbreak?), a small multinomial head
over folded features (which kind?), the feature spec and window geometry it was trained with, and
decision thresholds per source group and paranoia level. Thresholds are stored as margins (logits),
so `calibrated()` is one subtraction and a sigmoid: 0.5 means exactly on the threshold.

Artefacts are written with fixed zip timestamps, so one training run always gives the same bytes.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vallum.errors import DetectorError
from vallum.models.artefacts import write_artefact
from vallum.models.features import I64, FeatureSpec, NGrams
from vallum.text.chunking import chunks

F32 = npt.NDArray[np.float32]
PARANOIA_LEVELS = (1, 2, 3, 4)
FORMAT_VERSION = 2
# A window whose n-gram occurrences are less than this fraction distinct is one phrase said over and over
# (prose and attacks alike sit above 0.45). Summed weights grow with the square root of the repetitions,
# so such a window is scored as if each n-gram occurred once.
REPETITIVE_BELOW = 0.3


@dataclass(frozen=True)
class LinearModel:
    spec: FeatureSpec
    weights: F32
    bias: float
    subtype_labels: tuple[str, ...]
    subtype_bits: int
    subtype_weights: F32  # (labels, 2**subtype_bits)
    subtype_bias: F32
    source_groups: tuple[str, ...]
    thresholds: F32  # margins, (source_groups, paranoia levels)
    window_scales: tuple[tuple[int, int], ...]  # (size, stride) pairs, smallest first
    metadata: dict[str, object]

    def window_margins(self, grams: NGrams, windows: I64) -> npt.NDArray[np.float64]:
        """Log-odds of the binary head for each [start, end) window of joined batch positions.

        Two prefix sums over positions (summed weights, occurrence counts) score any number of
        windows in O(1) each: the cost is one gather of weights per n-gram, whatever the windows.
        """
        if len(windows) == 0:
            return np.zeros(0, dtype=np.float64)
        size = int(windows[:, 1].max()) + 1
        weight_at = np.bincount(grams.position, weights=self.weights[grams.bucket], minlength=size)
        count_at = np.bincount(grams.position, minlength=size)
        weight_sum = np.concatenate(([0.0], np.cumsum(weight_at)))
        count_sum = np.concatenate(([0], np.cumsum(count_at)))
        start, end = windows[:, 0], windows[:, 1]
        counts = count_sum[end] - count_sum[start]
        sums = weight_sum[end] - weight_sum[start]
        return np.asarray(sums / np.sqrt(np.maximum(counts, 1)) + self.bias, dtype=np.float64)

    def damp_repetition(
        self, grams: NGrams, windows: I64, margins: npt.NDArray[np.float64], above: float
    ) -> npt.NDArray[np.float64]:
        """`margins`, with repetitive windows among those at or over `above` scored on distinct n-grams.

        Only windows that would fire are looked at, so benign traffic almost never pays for it.
        """
        firing = np.flatnonzero(margins >= above)
        if len(firing) == 0:
            return margins
        order = np.argsort(grams.position, kind="stable")
        position, bucket = grams.position[order], grams.bucket[order]
        damped = margins.copy()
        for i in firing:
            lo, hi = np.searchsorted(position, windows[i])
            inside = bucket[lo:hi]
            distinct = np.unique(inside)
            if len(inside) and len(distinct) < REPETITIVE_BELOW * len(inside):
                once = float(self.weights[distinct].sum() / np.sqrt(len(distinct)) + self.bias)
                damped[i] = min(margins[i], once)
        return damped

    def subtype(self, grams: NGrams, start: int, end: int) -> str:
        """Most likely kind for one window (called only for windows that fired)."""
        inside = (grams.position >= start) & (grams.position < end)
        folded = grams.bucket[inside] & ((1 << self.subtype_bits) - 1)
        if len(folded) == 0:
            return self.subtype_labels[0]
        logits = self.subtype_weights[:, folded].sum(axis=1) / np.sqrt(len(folded)) + self.subtype_bias
        return self.subtype_labels[int(np.argmax(logits))]

    def windows(self, text: str) -> list[tuple[int, int]]:
        return runtime_windows(text, self.window_scales)

    def threshold(self, source_group: str, paranoia: int) -> float:
        level = min(max(paranoia, PARANOIA_LEVELS[0]), PARANOIA_LEVELS[-1])
        return float(self.thresholds[self.source_groups.index(source_group), level - 1])

    def calibrated(self, margins: npt.NDArray[np.float64], source_group: str, paranoia: int) -> F32:
        """Scores in [0, 1] where >= 0.5 means over this source group's threshold at this paranoia."""
        shifted = np.clip(margins - self.threshold(source_group, paranoia), -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-shifted))).astype(np.float32)


def scale_windows(length: int, scales: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """The windows run time scores over a text of `length` characters: every (size, stride) scale.

    Small windows keep a short attack from being diluted by pages of benign text around it; large
    ones see attacks spread over a long prompt. A text shorter than a scale is one window there.
    """
    return sorted({b for size, stride in scales for b in chunks(length, size, size - stride)})


# A sentence or line: an instruction hidden in a document is usually one, and scored alone it is not
# diluted by the benign text around it.
_SENTENCE = re.compile(r"[^.!?。！？\n]+[.!?。！？]*")
MIN_SENTENCE_CHARS = 24


def sentence_windows(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Sentences of at least MIN_SENTENCE_CHARS (short ones joined to the next), long ones cut to max_chars."""
    out: list[tuple[int, int]] = []
    start = None
    for match in _SENTENCE.finditer(text):
        if start is None:
            start = match.start()
        if match.end() - start >= MIN_SENTENCE_CHARS:
            out += [(start + a, start + b) for a, b in chunks(match.end() - start, max_chars, max_chars // 2)]
            start = None
    return out


def runtime_windows(text: str, scales: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """Every window run time scores: sentences, then each (size, stride) scale over the whole text."""
    if len(text) <= scales[0][0]:
        return [(0, len(text))]
    return sorted(set(sentence_windows(text, scales[0][0])) | set(scale_windows(len(text), scales)))


def load_model(path: str | Path) -> LinearModel:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive["metadata"]).decode("utf-8"))
            if meta.get("format_version") != FORMAT_VERSION:
                raise DetectorError(
                    f"model {path} has format {meta.get('format_version')}, this vallum reads {FORMAT_VERSION};"
                    " rebuild it with `python -m training.build_injection`"
                )
            return LinearModel(
                spec=FeatureSpec(**meta["spec"]),
                weights=archive["weights"].astype(np.float32),
                bias=float(meta["bias"]),
                subtype_labels=tuple(meta["subtype_labels"]),
                subtype_bits=int(meta["subtype_bits"]),
                subtype_weights=archive["subtype_weights"].astype(np.float32),
                subtype_bias=archive["subtype_bias"].astype(np.float32),
                source_groups=tuple(meta["source_groups"]),
                thresholds=archive["thresholds"].astype(np.float32),
                window_scales=tuple((int(a), int(b)) for a, b in meta["window_scales"]),
                metadata=meta,
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DetectorError(f"cannot load classifier artefact {path}: {exc}") from exc


def save_model(model: LinearModel, path: str | Path) -> None:
    """Write a compressed `.npz` whose bytes depend only on the model (no timestamps, fixed order)."""
    meta = dict(model.metadata)
    meta.update(
        format_version=FORMAT_VERSION,
        spec={
            "bits": model.spec.bits,
            "char_min": model.spec.char_min,
            "char_max": model.spec.char_max,
            "word_max": model.spec.word_max,
        },
        bias=model.bias,
        subtype_labels=list(model.subtype_labels),
        subtype_bits=model.subtype_bits,
        source_groups=list(model.source_groups),
        window_scales=[list(scale) for scale in model.window_scales],
    )
    arrays: dict[str, npt.NDArray[Any]] = {
        "weights": model.weights.astype(np.float16),
        "subtype_weights": model.subtype_weights.astype(np.float16),
        "subtype_bias": model.subtype_bias.astype(np.float32),
        "thresholds": model.thresholds.astype(np.float32),
    }
    write_artefact(path, meta, arrays)
