"""Active content in output: HTML/JS/CSS that runs in a browser, shell one-liners that run in a tool.

The rule file (rules/output.yaml) is data; this module holds its schema and one RE2 set per rule file
that finds every applicable rule in a single linear pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.detectors.patternset import PatternSet
from vallum.detectors.rules import (
    PatternRule,
    RatedRule,
    bundled_rule_path,
    load_rule_file,
)

Destination = Literal["browser", "tool", "shell"]


class _Rule(RatedRule):
    id: str = Field(pattern=r"^VAL-OUT-\d{4}$")
    description: str = Field(min_length=1)
    paranoia: int = Field(ge=1, le=4)


class HiddenCharacterRule(_Rule):
    """How much one kind of normaliser signal counts in output."""

    kind: str = Field(min_length=1)


class ActiveContentRule(_Rule, PatternRule):
    subtype: Literal["active_html", "shell_command"]
    destinations: frozenset[Destination] = Field(min_length=1)


class OutputRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    hidden_characters: tuple[HiddenCharacterRule, ...] = ()
    rules: tuple[ActiveContentRule, ...] = ()

    @model_validator(mode="after")
    def _ids_are_unique(self) -> OutputRuleFile:
        ids = [rule.id for rule in (*self.hidden_characters, *self.rules)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"rule ids used more than once: {', '.join(repeated)}")
        return self


def load_output_rules(path: str | Path | None = None) -> OutputRuleFile:
    return load_rule_file(Path(path) if path is not None else bundled_rule_path("output"), OutputRuleFile)


@dataclass(frozen=True, slots=True)
class ActiveHit:
    rule: ActiveContentRule
    start: int
    end: int


class ActiveContentMatcher:
    """Every pattern of every rule in one RE2 set; rules are filtered by destination and paranoia after."""

    def __init__(self, rules: tuple[ActiveContentRule, ...]) -> None:
        self._owner = [rule for rule in rules for _ in rule.patterns]
        self._patterns = PatternSet([pattern for rule in rules for pattern in rule.patterns])

    def find(self, text: str, destinations: frozenset[str], paranoia: int) -> list[ActiveHit]:
        """The first match of each applicable rule (one is enough to judge; spans show where)."""
        if not destinations:
            return []
        data = text.encode("utf-8", "surrogatepass")
        hits: dict[str, ActiveHit] = {}
        for index in self._patterns.matching(data):
            rule = self._owner[index]
            if rule.id in hits or rule.paranoia > paranoia or not rule.destinations & destinations:
                continue
            span = self._patterns.span(index, text, data)
            if span is not None:
                hits[rule.id] = ActiveHit(rule, *span)
        return list(hits.values())
