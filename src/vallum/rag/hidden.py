"""The `hidden_instructions` detector: instruction-like text in content a document hides from readers.

It runs only on hidden text (the scanner gives it a Guard of its own), where ordinary imperative
sentences are already suspicious: nobody reads that text but the model. Rules are data, in
src/vallum/rules/hidden_instructions.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Source
from vallum.detectors.patternset import PatternSet, evidence, first_match_per_rule
from vallum.detectors.rules import (
    PatternRule,
    bundled_rule_path,
    ensure_unique,
    load_rule_file,
)
from vallum.text.normalize import NormalizedText

SUBTYPE = "hidden_instructions"


class HiddenInstructionRule(PatternRule):
    id: str = Field(pattern=r"^VAL-HID-\d{4}$")
    description: str = Field(min_length=1)


class HiddenInstructionRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    rules: tuple[HiddenInstructionRule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> HiddenInstructionRuleFile:
        ensure_unique((rule.id for rule in self.rules), "rule id")
        return self


class HiddenInstructionsDetector:
    name: ClassVar[str] = SUBTYPE
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(self, rule_file: str | Path | None = None) -> None:
        path = Path(rule_file) if rule_file is not None else bundled_rule_path(SUBTYPE)
        self.rules = load_rule_file(path, HiddenInstructionRuleFile).rules
        self._rule_of_pattern = [rule for rule in self.rules for _ in rule.patterns]
        self._patterns = PatternSet([pattern for rule in self.rules for pattern in rule.patterns])

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return [
            Finding(
                detector=self.name,
                category="injection",
                severity=rule.severity_level,
                score=rule.score,
                span=view.span(start, end),
                evidence=evidence(view.text[start:end]),
                subtype=SUBTYPE,
                rule_id=rule.id,
            )
            for rule, view, start, end in first_match_per_rule(self._patterns, self._rule_of_pattern, text)
        ]
