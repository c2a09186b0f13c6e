"""Signature rule files: their schema, validation and loading (rules are data, reviewed as YAML)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Literal, TypeVar

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vallum.core.types import Severity, Source
from vallum.datafiles import load_yaml
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


class RatedRule(BaseModel):
    """What every rule file's rules share: a severity, and the finding score that follows from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    severity: SeverityName

    @property
    def severity_level(self) -> Severity:
        return Severity[self.severity.upper()]

    @property
    def score(self) -> float:
        return SEVERITY_SCORE[self.severity_level]


def ensure_unique(values: Iterable[str], what: str) -> None:
    """Rule ids are how findings, tests and reviews refer to rules: two rules may not share one."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value} is used twice; {what}s must be stable and unique")
        seen.add(value)


def compiled_in_re2(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Rule patterns run on RE2 (linear time): one it cannot compile is a rule-file error, found at load."""
    for pattern in patterns:
        try:
            re2.compile(pattern)
        except re2.error as exc:
            raise ValueError(f"pattern {pattern!r} is not valid RE2 syntax: {exc}") from exc
    return patterns


class PatternRule(RatedRule):
    """A rule that matches text: RE2 patterns checked at load, examples that must match and counter-examples
    that must not (the tests run both for every rule file)."""

    patterns: tuple[str, ...] = Field(min_length=1)
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()

    @field_validator("patterns")
    @classmethod
    def _patterns_compile_in_re2(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return compiled_in_re2(patterns)


class Rule(PatternRule):
    id: str = Field(pattern=r"^VAL-[A-Z]{3}-\d{4}$")
    description: str = Field(min_length=1)
    subtype: Subtype
    paranoia: int = Field(ge=1, le=4)
    languages: tuple[str, ...] = ("en",)
    # None: every source; otherwise only text from these sources (e.g. markers that matter in documents).
    sources: frozenset[Source] | None = None

    def applies_to(self, source: Source) -> bool:
        return self.sources is None or source in self.sources


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> RuleFile:
        ensure_unique((rule.id for rule in self.rules), "rule id")
        return self


class ObfuscationRule(RatedRule):
    """How much one kind of normaliser signal (e.g. "tag_chars") counts, and from which paranoia level."""

    id: str = Field(pattern=r"^VAL-[A-Z]{3}-\d{4}$")
    kind: str = Field(min_length=1)
    description: str = Field(min_length=1)
    paranoia: int = Field(ge=1, le=4)


class ObfuscationRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    rules: tuple[ObfuscationRule, ...]

    @model_validator(mode="after")
    def _ids_and_kinds_are_unique(self) -> ObfuscationRuleFile:
        for attribute in ("id", "kind"):
            values = [getattr(rule, attribute) for rule in self.rules]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"{attribute} used by more than one rule: {', '.join(duplicates)}")
        return self


_FileModel = TypeVar("_FileModel", bound=BaseModel)


def load_rules(paths: Iterable[str | Path]) -> tuple[Rule, ...]:
    """Signature rules from YAML files, in file order; ids must be unique across all of them."""
    rules: list[Rule] = []
    for path in paths:
        rules.extend(load_rule_file(Path(path), RuleFile).rules)
    RuleFile(version=1, rules=tuple(rules))  # re-checks id uniqueness across files
    return tuple(rules)


def load_obfuscation_rules(path: str | Path) -> tuple[ObfuscationRule, ...]:
    return load_rule_file(Path(path), ObfuscationRuleFile).rules


def bundled_rule_path(name: str) -> Path:
    """Path of a rule file shipped inside the package (src/vallum/rules/<name>.yaml)."""
    return Path(str(files("vallum").joinpath("rules", f"{name}.yaml")))


def load_rule_file(path: Path, schema: type[_FileModel]) -> _FileModel:
    """Read, parse and validate one YAML data file against its schema, or say what is wrong with it."""
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"cannot read rule file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(f"rule file {path} is not valid YAML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise RuleFileError(f"rule file {path} is invalid:\n{exc}") from exc
