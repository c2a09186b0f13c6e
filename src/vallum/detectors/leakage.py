"""Leakage detector: a planted canary or a substantial part of the protected system prompt in output.

Canaries are searched in every view of the text (canonical, despaced, de-leeted, decoded base64/hex/
URL/ROT13/tag characters) and, for their base64 forms, in the original; the echo check reads the
canonical and decoded views. Both are stateless per text, so through a StreamScanner they see its
window (held-back text plus recent context): a canary split across chunks is whole in the window, and
a long echo is caught by its absolute size even where the window holds only part of the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vallum.canary import DEFAULT_MIN_PREFIX, CanaryHit, CanaryMatcher, fingerprint
from vallum.core.types import Finding, Severity, Source, Span
from vallum.detectors.rules import (
    bundled_rule_path,
    load_rule_file,
)
from vallum.echo import DEFAULT_SHINGLE, EchoIndex, EchoMatch
from vallum.errors import DetectorError
from vallum.text.normalize import CANONICAL, DECODED, NormalizedText

CATEGORY = "leakage"
COMPLETE_CANARY_SCORE = 0.99
PARTIAL_CANARY_SCORE = 0.9
# Shingle counts below are keys: about three per content word of a copied passage (one consecutive
# shingle and two with a skipped word start at each word).
# A prompt with fewer distinctive shingles is too generic to recognise in output; protect it with a canary.
DEFAULT_MIN_DISTINCTIVE = 24
# Distinct prompt shingles an output must contain before it counts as an echo, per paranoia level.
MIN_MATCHED = {1: 15, 2: 12, 3: 9, 4: 6}
# The score saturates at this coverage of the prompt, or at this many matched shingles (about 30 content
# words copied): a long verbatim passage leaks even when the prompt is much longer.
FULL_COVERAGE = 0.5
FULL_MATCHED = 90
ECHO_FLOOR, ECHO_CEILING = 0.3, 0.97
SERIOUS_COVERAGE = 0.25


class LeakageVocabulary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    stopwords: tuple[str, ...]
    generic_words: tuple[str, ...]

    @field_validator("stopwords", "generic_words", mode="before")
    @classmethod
    def _split_words(cls, value: object) -> object:
        return tuple(value.split()) if isinstance(value, str) else value


def load_vocabulary(path: str | Path | None = None) -> LeakageVocabulary:
    return load_rule_file(Path(path) if path is not None else bundled_rule_path("leakage"), LeakageVocabulary)


class LeakageDetector:
    """Options: `canaries` (list of planted canaries), `system_prompt` (the protected prompt text)."""

    name: ClassVar[str] = "leakage"
    categories: ClassVar[tuple[str, ...]] = (CATEGORY,)
    sources: ClassVar[frozenset[Source]] = frozenset({Source.MODEL_OUTPUT, Source.TOOL_CALL})

    def __init__(
        self,
        canaries: Sequence[str] = (),
        system_prompt: str | None = None,
        *,
        min_prefix: int = DEFAULT_MIN_PREFIX,
        shingle_size: int = DEFAULT_SHINGLE,
        min_distinctive: int = DEFAULT_MIN_DISTINCTIVE,
        vocabulary: str | Path | None = None,
        max_findings: int = 32,
    ) -> None:
        if isinstance(canaries, str):
            raise DetectorError("option canaries must be a list of canaries, not one string")
        self.canaries = CanaryMatcher(list(canaries), min_prefix=min_prefix)
        self.max_findings = max_findings
        self.echo: EchoIndex | None = None
        if system_prompt:
            words = load_vocabulary(vocabulary)
            index = EchoIndex(
                system_prompt, stopwords=words.stopwords, generic_words=words.generic_words, size=shingle_size
            )
            # A generic prompt cannot be told apart from ordinary answers: no echo check at all.
            self.echo = index if index.total >= min_distinctive else None
        # An echo is recognised only after several words, and a canary may come letter-spaced: a stream must
        # be held back in full for the block to come before any of it is shown.
        self.needs_lookahead = self.echo is not None or bool(self.canaries.canaries)

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        findings = self._canary_findings(text)
        if self.echo is not None:
            findings.extend(self._echo_findings(self.echo, text, paranoia))
        return findings[: self.max_findings]

    def _canary_findings(self, text: NormalizedText) -> list[Finding]:
        if not self.canaries.canaries:
            return []
        located: list[tuple[CanaryHit, Span]] = [
            (hit, Span(hit.start, hit.end)) for hit in self.canaries.find_exact(text.original)
        ]
        for view in text.views:
            located.extend(
                (hit, view.span(hit.start, hit.end)) for hit in self.canaries.find_folded(view.text)
            )
        # The same leak shows in several views: keep the most complete sighting of each place.
        located.sort(key=lambda pair: (-pair[0].matched / pair[0].length, pair[1].start))
        kept: list[tuple[CanaryHit, Span]] = []
        for hit, span in located:
            if any(k.canary == hit.canary and _overlap(span, s) for k, s in kept):
                continue
            kept.append((hit, span))
        return [self._canary_finding(hit, span) for hit, span in sorted(kept, key=lambda pair: pair[1].start)]

    def _canary_finding(self, hit: CanaryHit, span: Span) -> Finding:
        how = "complete" if hit.complete else f"{hit.matched} of {hit.length} characters"
        return Finding(
            detector=self.name,
            category=CATEGORY,
            severity=Severity.CRITICAL if hit.complete else Severity.ERROR,
            score=COMPLETE_CANARY_SCORE if hit.complete else PARTIAL_CANARY_SCORE,
            span=span,
            evidence=f"canary {fingerprint(hit.canary)} ({hit.form}, {how})",
            subtype="canary",
        )

    def _echo_findings(self, echo: EchoIndex, text: NormalizedText, paranoia: int) -> list[Finding]:
        findings: list[Finding] = []
        for view in text.views:
            if view.name != CANONICAL and not view.name.startswith(DECODED):
                continue
            match = echo.match(view.text)
            if match is None or match.matched < min(MIN_MATCHED.get(paranoia, 6), echo.total):
                continue
            score = echo_score(match)
            severity = (
                Severity.ERROR
                if match.coverage >= SERIOUS_COVERAGE or match.matched >= FULL_MATCHED
                else Severity.WARNING
            )
            where = "" if view.name == CANONICAL else f" in {view.name[len(DECODED) :]}-decoded text"
            evidence = (
                f"{match.coverage:.0%} of the system prompt ({match.matched} of {match.total} "
                f"distinctive phrases){where}"
            )
            findings.extend(
                Finding(
                    detector=self.name,
                    category=CATEGORY,
                    severity=severity,
                    score=score,
                    span=view.span(start, end),
                    evidence=evidence,
                    subtype="prompt_echo",
                )
                for start, end in match.spans
            )
        return findings


def echo_score(match: EchoMatch) -> float:
    """Rises with the share of the prompt reproduced, or with the sheer size of the reproduced text."""
    strength = min(1.0, max(match.coverage / FULL_COVERAGE, match.matched / FULL_MATCHED))
    return ECHO_FLOOR + (ECHO_CEILING - ECHO_FLOOR) * strength


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end
