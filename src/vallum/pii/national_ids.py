"""National identifiers: an RE2 shape per identifier and python-stdnum's checksum and grammar rules.

Identifiers with a weak check (a bare number that one in ten or eleven random numbers passes) start
with a low confidence and need a context word ("BSN", "Aadhaar", "Steuer-ID") to reach the default
thresholds; formatted ones with a strong check are reported on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar, pan
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

from vallum.pii import entity
from vallum.pii.recognizer import PatternRecognizer, Validated, isolated


@dataclass(frozen=True, slots=True)
class IdSpec:
    entity_type: str
    region: str
    pattern: str
    is_valid: Callable[[str], bool]
    score: float
    context_words: tuple[str, ...]
    # Confidence for the bare form (no separators) when that differs: bare numbers collide with other ids.
    bare_score: float | None = None


class NationalIdRecognizer(PatternRecognizer):
    def __init__(self, spec: IdSpec) -> None:
        self.name = spec.entity_type.lower()
        self.entity_type = spec.entity_type
        self.regions = frozenset({spec.region})
        self.pattern = spec.pattern
        self.context_words = spec.context_words
        self.spec = spec
        super().__init__()

    def validate(self, text: str, start: int, end: int) -> Validated | None:
        if not isolated(text, start, end):
            return None
        value = text[start:end]
        separators = {c for c in value if c in " -."}
        if len(separators) > 1 or not self.spec.is_valid(value):
            return None
        score = self.spec.score
        if not separators and self.spec.bare_score is not None:
            score = self.spec.bare_score
        return Validated(start, end, score, self.spec.region)


def _nino_is_valid(value: str) -> bool:
    """UK National Insurance number: HMRC's prefix rules (no checksum exists)."""
    compact = value.replace(" ", "").upper()
    first, second, prefix = compact[0], compact[1], compact[:2]
    return (
        first not in "DFIQUV"
        and second not in "DFIOQUV"
        and prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
        and compact[-1] in "ABCD"
    )


_TAX_WORDS = ("tax", "tin", "steuer", "idnr", "identifikationsnummer")

SPECS: tuple[IdSpec, ...] = (
    IdSpec(
        entity.US_SSN,
        "US",
        r"\b\d{3}[- ]\d{2}[- ]\d{4}\b|\b\d{9}\b",
        ssn.is_valid,
        0.85,
        ("ssn", "social security", "social sec", "ss#", "ss #"),
        bare_score=0.3,
    ),
    IdSpec(
        entity.UK_NINO,
        "GB",
        r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
        _nino_is_valid,
        0.75,
        ("national insurance", "nino", "ni number", "ni no"),
    ),
    IdSpec(entity.DE_TAX_ID, "DE", r"\b\d{2} ?\d{3} ?\d{3} ?\d{3}\b", idnr.is_valid, 0.3, _TAX_WORDS),
    IdSpec(
        entity.FR_NIR,
        "FR",
        r"(?i)\b[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b",
        nir.is_valid,
        0.8,
        ("sécurité sociale", "securite sociale", "nir", "insee", "social security"),
    ),
    IdSpec(entity.ES_DNI, "ES", r"(?i)\b\d{8}-?[A-Z]\b", dni.is_valid, 0.7, ("dni", "nif", "documento")),
    IdSpec(entity.ES_NIE, "ES", r"(?i)\b[XYZ]-?\d{7}-?[A-Z]\b", nie.is_valid, 0.8, ("nie", "extranjero")),
    IdSpec(
        entity.IT_FISCAL_CODE,
        "IT",
        r"(?i)\b[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]\b",
        codicefiscale.is_valid,
        0.9,
        ("codice fiscale", "fiscal code", "cf"),
    ),
    IdSpec(
        entity.NL_BSN,
        "NL",
        r"\b\d{4}\.\d{2}\.\d{3}\b|\b\d{9}\b",
        bsn.is_valid,
        0.3,
        ("bsn", "burgerservicenummer", "sofinummer"),
    ),
    IdSpec(
        entity.IN_AADHAAR,
        "IN",
        r"\b[2-9]\d{3} ?\d{4} ?\d{4}\b",
        aadhaar.is_valid,
        0.5,
        ("aadhaar", "aadhar", "uidai", "uid"),
        bare_score=0.3,
    ),
    IdSpec(
        entity.IN_PAN,
        "IN",
        r"\b[A-Z]{3}[ABCFGHLJPT][A-Z]\d{4}[A-Z]\b",
        pan.is_valid,
        0.7,
        ("pan", "income tax"),
    ),
)


def national_id_recognizers() -> list[NationalIdRecognizer]:
    return [NationalIdRecognizer(spec) for spec in SPECS]
