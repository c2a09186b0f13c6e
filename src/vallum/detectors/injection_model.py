"""Cascade stage: a larger injection classifier (a Hugging Face model exported to ONNX) that decides
where the fast classifier is unsure.

The Guard runs it only for texts whose injection score after the fast detectors lies in `band`, and
there its finding replaces those of the detectors named in `overrides`. It reads the original text,
not a normalised view: these models are trained on raw, cased text. Policy thresholds decide what its
probability means, so paranoia does not change it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Severity, Source, Span
from vallum.errors import DetectorError
from vallum.models.hub import resolve_model_directory
from vallum.models.onnx_classifier import OnnxSequenceClassifier, WindowScore
from vallum.text.normalize import NormalizedText


class InjectionModelStage:
    name: ClassVar[str] = "injection_model"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(
        self,
        model: str,
        band: Sequence[float] = (0.2, 0.8),
        overrides: Sequence[str] = ("injection_classifier",),
        labels: Sequence[str] | None = None,
        max_length: int = 512,
        threads: int = 1,
        batch_size: int = 16,
        revision: str | None = None,
    ) -> None:
        """`model` is a local directory or a hub id (owner/name, pinned with `revision`); `labels` names
        the attack class(es) when config.json's id2label does not use a common name; `threads` 0 lets
        onnxruntime choose."""
        if len(band) != 2 or not 0.0 <= band[0] < band[1]:
            raise DetectorError(f"band must be [low, high) with 0 <= low < high, got {list(band)}")
        if isinstance(overrides, str):
            raise DetectorError(f"overrides must be a list of detector names, got the string {overrides!r}")
        self.band: tuple[float, float] = (float(band[0]), float(band[1]))
        self.overrides: frozenset[str] = frozenset(overrides)
        self.classifier = OnnxSequenceClassifier(
            resolve_model_directory(model, revision),
            labels=labels,
            max_length=max_length,
            threads=threads,
            batch_size=batch_size,
        )

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return self.detect_batch([text], [source], paranoia)[0]

    def detect_batch(
        self, texts: Sequence[NormalizedText], sources: Sequence[Source], paranoia: int
    ) -> list[list[Finding]]:
        # Always one finding, low scores included: it records why the fast classifier's opinion was dropped.
        return [[self._finding(s)] for s in self.classifier.score([t.original for t in texts])]

    def _finding(self, scored: WindowScore) -> Finding:
        label = "+".join(self.classifier.positive_labels)
        windows = f", best of {scored.windows} windows" if scored.windows > 1 else ""
        return Finding(
            detector=self.name,
            category="injection",
            severity=Severity.ERROR,
            score=scored.score,
            span=Span(scored.start, scored.end),
            evidence=f"P({label}) = {scored.score:.3f}{windows}",
            subtype="model",
        )
