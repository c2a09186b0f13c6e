"""Run time of the shipped linear classifiers: load an `.npz` artefact and score featurised rows.

An artefact holds a binary head (is this text an injection or jailbreak?), a small multinomial head
over folded features (which kind?), the feature spec and window geometry it was trained with, and
decision thresholds per source group and paranoia level. Thresholds are stored as margins (logits),
so `calibrated()` is one subtraction and a sigmoid: 0.5 means exactly on the threshold.

Artefacts are written with fixed zip timestamps, so one training run always gives the same bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vallum.errors import DetectorError
from vallum.models.features import FeatureSpec, SparseRows

F32 = npt.NDArray[np.float32]
PARANOIA_LEVELS = (1, 2, 3, 4)
FORMAT_VERSION = 1


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
    window_chars: int
    window_stride: int
    metadata: dict[str, object]

    def margins(self, rows: SparseRows) -> npt.NDArray[np.float64]:
        """Log-odds of the binary head for each row."""
        contributions = self.weights[rows.indices] * rows.values
        sums = np.bincount(rows.row_ids(), weights=contributions, minlength=rows.n_rows)
        return np.asarray(sums + self.bias, dtype=np.float64)

    def subtype(self, rows: SparseRows, row: int) -> str:
        """Most likely kind for one row (called only for rows that fired, so a loop is fine)."""
        lo, hi = rows.indptr[row], rows.indptr[row + 1]
        folded = rows.indices[lo:hi] & ((1 << self.subtype_bits) - 1)
        logits = self.subtype_weights[:, folded] @ rows.values[lo:hi] + self.subtype_bias
        return self.subtype_labels[int(np.argmax(logits))]

    def threshold(self, source_group: str, paranoia: int) -> float:
        level = min(max(paranoia, PARANOIA_LEVELS[0]), PARANOIA_LEVELS[-1])
        return float(self.thresholds[self.source_groups.index(source_group), level - 1])

    def calibrated(self, margins: npt.NDArray[np.float64], source_group: str, paranoia: int) -> F32:
        """Scores in [0, 1] where >= 0.5 means over this source group's threshold at this paranoia."""
        shifted = np.clip(margins - self.threshold(source_group, paranoia), -30.0, 30.0)
        return (1.0 / (1.0 + np.exp(-shifted))).astype(np.float32)


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
                window_chars=int(meta["window_chars"]),
                window_stride=int(meta["window_stride"]),
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
        window_chars=model.window_chars,
        window_stride=model.window_stride,
    )
    arrays = {
        "metadata": np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        "weights": model.weights.astype(np.float16),
        "subtype_weights": model.subtype_weights.astype(np.float16),
        "subtype_bias": model.subtype_bias.astype(np.float32),
        "thresholds": model.thresholds.astype(np.float32),
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
