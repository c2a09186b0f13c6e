"""The secret rule file: its schema, validation and loading (formats are data, reviewed as YAML).

The injection rule schema (rules.py) does not fit secrets: a secret rule has one case-sensitive pattern
whose `secret` group is the value, plus context keywords, an entropy floor and a validator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vallum.core.types import Severity
from vallum.datafiles import load_yaml
from vallum.detectors.rules import SEVERITY_SCORE, RuleFileError, SeverityName, bundled_rule_path
from vallum.detectors.secret_checks import VALIDATORS

ValueShape = Literal["uuid", "hex_digest", "identifier", "data_uri", "no_digits", "code_expression"]
SECRET_GROUP = "secret"


class SecretRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VAL-SEC-\d{4}$")
    description: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    subtype: str = Field(pattern=r"^[a-z0-9_]+$")
    severity: SeverityName
    paranoia: int = Field(default=1, ge=1, le=4)
    pattern: str
    keywords: tuple[str, ...] = ()
    validator: str | None = None
    min_entropy: float | None = Field(default=None, ge=0, le=8)
    reject: tuple[ValueShape, ...] = ()
    examples: tuple[str, ...] = ()
    counter_examples: tuple[str, ...] = ()

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles_in_re2(cls, pattern: str) -> str:
        try:
            re2.compile(pattern)
        except re2.error as exc:
            raise ValueError(f"pattern {pattern!r} is not valid RE2 syntax: {exc}") from exc
        return pattern

    @field_validator("keywords")
    @classmethod
    def _keywords_are_lower_case(cls, keywords: tuple[str, ...]) -> tuple[str, ...]:
        for keyword in keywords:
            if keyword != keyword.lower():
                raise ValueError(f"keyword {keyword!r} must be lower case (the context is lower-cased)")
        return keywords

    @field_validator("validator")
    @classmethod
    def _validator_exists(cls, name: str | None) -> str | None:
        if name is not None and name not in VALIDATORS:
            raise ValueError(f"unknown validator {name!r}; known: {', '.join(sorted(VALIDATORS))}")
        return name

    @property
    def severity_level(self) -> Severity:
        return Severity[self.severity.upper()]

    @property
    def score(self) -> float:
        return SEVERITY_SCORE[self.severity_level]


class SecretRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    placeholder_markers: tuple[str, ...] = ()
    placeholder_values: tuple[str, ...] = ()
    rules: tuple[SecretRule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> SecretRuleFile:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} is used twice; ids must be stable and unique")
            seen.add(rule.id)
        return self


def load_secret_rules(path: str | Path | None = None) -> SecretRuleFile:
    """The bundled secrets.yaml, or another file with the same schema."""
    path = Path(path) if path is not None else bundled_rule_path("secrets")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleFileError(f"cannot read secret rule file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(f"secret rule file {path} is not valid YAML: {exc}") from exc
    try:
        return SecretRuleFile.model_validate(raw)
    except ValidationError as exc:
        raise RuleFileError(f"secret rule file {path} is invalid:\n{exc}") from exc
