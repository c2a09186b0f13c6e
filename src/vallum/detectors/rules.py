"""Signature rule files: their schema, validation and loading (rules are data, reviewed as YAML)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vallum.core.types import Severity, Source
from vallum.errors import DetectorError

SeverityName = Literal["notice", "warning", "error", "critical"]
Subtype = Literal[
    "jailbreak",
    "prompt_injection",
    "indirect_injection",
    "prompt_extraction",
    "exfiltration",
    "obfuscation",
]

# Probability-like score a finding carries, per severity; the Guard combines these with noisy-OR.
SEVERITY_SCORE: dict[Severity, float] = {
    Severity.CRITICAL: 0.95,
    Severity.ERROR: 0.85,
    Severity.WARNING: 0.6,
    Severity.NOTICE: 0.35,
}


class RuleFileError(DetectorError):
    """A rule file is missing, not YAML, or breaks the rule schema; the message names file and rule."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VAL-[A-Z]{3}-\d{4}$")
    description: str = Field(min_length=1)
    subtype: Subtype
    severity: SeverityName
    paranoia: int = Field(ge=1, le=4)
    patterns: tuple[str, ...] = Field(min_length=1)
    languages: tuple[str, ...] = ("en",)
    # None: every source; otherwise only text from these sources (e.g. markers that matter in documents).
    sources: frozenset[Source] | None = None
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _patterns_compile_in_re2(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re2.compile(pattern)
            except re2.error as exc:
                raise ValueError(f"pattern {pattern!r} is not valid RE2 syntax: {exc}") from exc
        return patterns

    @property
    def severity_level(self) -> Severity:
        return Severity[self.severity.upper()]

    @property
    def score(self) -> float:
        return SEVERITY_SCORE[self.severity_level]

    def applies_to(self, source: Source) -> bool:
        return self.sources is None or source in self.sources


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> RuleFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} is used twice; ids must be stable and unique")
            seen.add(rule.id)
        return self


def load_rules(paths: Iterable[str | Path]) -> tuple[Rule, ...]:
    """Rules from YAML files, in file order; ids must be unique across all of them."""
    rules: list[Rule] = []
    for path in paths:
        rules.extend(_load_file(Path(path)))
    RuleFile(version=1, rules=tuple(rules))  # re-checks id uniqueness across files
    return tuple(rules)


def bundled_rule_path(name: str) -> Path:
    """Path of a rule file shipped inside the package (src/vallum/rules/<name>.yaml)."""
    return Path(str(files("vallum").joinpath("rules", f"{name}.yaml")))


def _load_file(path: Path) -> tuple[Rule, ...]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"cannot read rule file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(f"rule file {path} is not valid YAML: {exc}") from exc
    try:
        return RuleFile.model_validate(raw).rules
    except ValidationError as exc:
        raise RuleFileError(f"rule file {path} is invalid:\n{exc}") from exc
