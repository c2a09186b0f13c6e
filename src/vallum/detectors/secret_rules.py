"""The secret rule file: its schema, validation and loading (formats are data, reviewed as YAML).

The injection rule schema (rules.py) does not fit secrets: a secret rule has one case-sensitive pattern
whose `secret` group is the value, plus context keywords, an entropy floor and a validator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vallum.detectors.rules import (
    RatedRule,
    bundled_rule_path,
    ensure_unique,
    load_rule_file,
)
from vallum.detectors.secret_checks import VALIDATORS

ValueShape = Literal["uuid", "hex_digest", "identifier", "data_uri", "no_digits", "code_expression"]
SECRET_GROUP = "secret"


class SecretRule(RatedRule):
    id: str = Field(pattern=r"^VAL-SEC-\d{4}$")
    description: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    subtype: str = Field(pattern=r"^[a-z0-9_]+$")
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


class SecretRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    placeholder_markers: tuple[str, ...] = ()
    placeholder_values: tuple[str, ...] = ()
    rules: tuple[SecretRule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> SecretRuleFile:
        ensure_unique((rule.id for rule in self.rules), "rule id")
        return self


def load_secret_rules(path: str | Path | None = None) -> SecretRuleFile:
    """The bundled secrets.yaml, or another file with the same schema."""
    return load_rule_file(Path(path) if path is not None else bundled_rule_path("secrets"), SecretRuleFile)
