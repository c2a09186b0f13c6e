"""PII detector (category `pii`): typed, validated entities with their span in the original text.

Options (policy `detectors.pii.options`): `entities` (names, default: all for the locales), `locales`
(`["en_US", "de_DE"]`; default: a broad set), `ner` (false / true / "auto"), `ner_model`.
Evidence never carries the value, only its type, a non-identifying detail and its length, because
findings are logged and stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Severity, Source, Span
from vallum.pii import entity as types
from vallum.pii.entity import PIIEntity
from vallum.pii.ner import DEFAULT_NER_MODEL
from vallum.pii.recognizer import DEFAULT_MAX_CANDIDATES
from vallum.pii.registry import NerOption, PIIAnalyzer
from vallum.text.normalize import NormalizedText

CATEGORY = "pii"
_CRITICAL = frozenset(
    {
        types.CREDIT_CARD,
        types.IBAN,
        types.US_SSN,
        types.UK_NINO,
        types.DE_TAX_ID,
        types.FR_NIR,
        types.ES_DNI,
        types.ES_NIE,
        types.IT_FISCAL_CODE,
        types.NL_BSN,
        types.IN_AADHAAR,
        types.IN_PAN,
    }
)
_ERROR = frozenset({types.EMAIL, types.PHONE_NUMBER, types.STREET_ADDRESS, types.DATE_OF_BIRTH})


def severity_of(entity_type: str) -> Severity:
    if entity_type in _CRITICAL:
        return Severity.CRITICAL
    if entity_type in _ERROR:
        return Severity.ERROR
    return Severity.WARNING


class PIIDetector:
    name: ClassVar[str] = "pii"
    categories: ClassVar[tuple[str, ...]] = (CATEGORY,)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(
        self,
        entities: Iterable[str] | None = None,
        locales: Iterable[str] | None = None,
        ner: NerOption = False,
        ner_model: str = DEFAULT_NER_MODEL,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        self.analyzer = PIIAnalyzer(entities, locales, ner, ner_model, max_candidates)
        # A statistical model reads the words around a name, after it too: a stream is held back in full.
        self.needs_lookahead = self.analyzer.uses_ner

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        # Spans must index the original text (redaction rewrites it), so recognizers read it, not a view.
        analysis = self.analyzer.analyze(text.original, paranoia)
        findings = [_finding(e) for e in analysis.entities]
        findings.extend(_truncation_notice(name) for name in analysis.truncated)
        return findings


def _finding(found: PIIEntity) -> Finding:
    detail = f" ({found.detail})" if found.detail else ""
    return Finding(
        detector=PIIDetector.name,
        category=CATEGORY,
        severity=severity_of(found.type),
        score=found.score,
        span=Span(found.start, found.end),
        evidence=f"{found.type}{detail}, {found.length} characters",
        subtype=found.type,
        rule_id=f"pii.{found.recognizer}",
    )


def _truncation_notice(recognizer: str) -> Finding:
    return Finding(
        detector=PIIDetector.name,
        category=CATEGORY,
        severity=Severity.NOTICE,
        score=0.0,
        evidence=f"recognizer {recognizer!r} reached its validation budget; the rest of the text was not "
        "checked for it (raise the pii option max_candidates to scan further)",
        subtype="scan_budget_exhausted",
        rule_id=f"pii.{recognizer}",
    )
