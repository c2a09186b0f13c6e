"""A logistic-regression head over sentence embeddings, with thresholds per source group and paranoia level.

The artefact is a small `.npz`: the weight vector, and a JSON metadata blob holding the bias, the
decision thresholds (as margins, so `calibrated()` is one subtraction and a sigmoid: 0.5 means exactly on
the threshold) and how the head was built. It is written with fixed zip timestamps, so one training run
always gives the same bytes.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vallum.errors import DetectorError
from vallum.models.artefacts import write_artefact

F32 = npt.NDArray[np.float32]
PARANOIA_LEVELS = (1, 2, 3, 4)
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EmbeddingHead:
    weights: F32  # (dim,)
    bias: float
    source_groups: tuple[str, ...]
    thresholds: tuple[tuple[float, ...], ...]  # margins, (source_groups, paranoia levels)
    metadata: dict[str, object]

    def margins(self, embeddings: F32) -> npt.NDArray[np.float64]:
        """Log-odds of the attack class for each row of an (n, dim) embedding matrix."""
        return np.asarray(embeddings @ self.weights, dtype=np.float64) + self.bias

    def threshold(self, source_group: str, paranoia: int) -> float:
        level = min(max(paranoia, PARANOIA_LEVELS[0]), PARANOIA_LEVELS[-1])
        return self.thresholds[self.source_groups.index(source_group)][level - 1]

    def calibrated(self, margins: npt.NDArray[np.float64], source_group: str, paranoia: int) -> F32:
        """Scores in [0, 1] where >= 0.5 means over this source group's threshold at this paranoia."""
        shifted = np.clip(margins - self.threshold(source_group, paranoia), -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-shifted))).astype(np.float32)


def load_head(path: str | Path) -> EmbeddingHead:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive["metadata"]).decode("utf-8"))
            weights = archive["weights"].astype(np.float32)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise DetectorError(f"cannot load embedding head {path}: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise DetectorError(
            f"embedding head {path} has format {meta.get('format_version')}, this vallum reads "
            f"{FORMAT_VERSION}; rebuild it with `python -m training.build_multilingual`"
        )
    return EmbeddingHead(
        weights=weights,
        bias=float(meta["bias"]),
        source_groups=tuple(meta["source_groups"]),
        thresholds=tuple(tuple(float(t) for t in row) for row in meta["thresholds"]),
        metadata=meta,
    )


def save_head(head: EmbeddingHead, path: str | Path) -> None:
    """Write a compressed `.npz` whose bytes depend only on the head (no timestamps, fixed key order)."""
    meta = dict(head.metadata)
    meta.update(
        format_version=FORMAT_VERSION,
        bias=head.bias,
        source_groups=list(head.source_groups),
        thresholds=[list(row) for row in head.thresholds],
    )
    arrays = {
        "weights": head.weights.astype(np.float32),
    }
    write_artefact(path, meta, arrays)
