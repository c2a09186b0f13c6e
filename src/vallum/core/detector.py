"""The tiny interface every detector implements, and the registry that finds them by name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from vallum.core.types import Finding, Source
from vallum.errors import DetectorError
from vallum.text.normalize import NormalizedText

ENTRY_POINT_GROUP = "vallum.detectors"


@runtime_checkable
class Detector(Protocol):
    """A detector reads normalised text and reports findings; it knows nothing of HTTP, storage or policy."""

    name: ClassVar[str]
    categories: ClassVar[tuple[str, ...]]
    sources: ClassVar[frozenset[Source]]

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]: ...


class BatchDetector(Detector, Protocol):
    """A detector that amortises work over many texts (one matrix product instead of many)."""

    def detect_batch(
        self, texts: Sequence[NormalizedText], sources: Sequence[Source], paranoia: int
    ) -> list[list[Finding]]: ...


@runtime_checkable
class CascadeStage(Detector, Protocol):
    """A slower, stronger detector that runs only where the fast ones are unsure, and there decides.

    The Guard runs it for texts whose score in one of its categories lies in `band` (low inclusive,
    high exclusive) after the fast detectors, and drops the findings of the detectors named in
    `overrides` for those texts: the big model's opinion replaces the small one's instead of adding to it.
    """

    band: tuple[float, float]
    overrides: frozenset[str]


ALL_SOURCES = frozenset(Source)


def available_detectors() -> list[str]:
    """Names of every detector installed under the `vallum.detectors` entry-point group."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def create_detector(name: str, options: Mapping[str, Any] | None = None) -> Detector:
    """Load only the named plugin, so a Guard pays for the detectors its policy enables and no others."""
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        known = ", ".join(available_detectors()) or "none"
        raise DetectorError(f"unknown detector {name!r}; installed detectors: {known}")
    ep = next(iter(found))
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must name itself, not crash with a bare ImportError
        raise DetectorError(f"detector plugin {name!r} ({ep.value}) failed to load: {exc}") from exc
    try:
        return cls(**dict(options or {}))  # type: ignore[no-any-return]
    except TypeError as exc:
        raise DetectorError(f"detector {name!r} rejected its options {dict(options or {})}: {exc}") from exc
