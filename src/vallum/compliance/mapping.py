"""The risk framework as data: which vallum controls address each risk and which events observe it.

The bundled mapping is rules/owasp_llm_2025.yaml; its header explains the fields. It is validated here,
so a typo in a control or a feature name fails at load with the file and the key named.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.core.types import Source
from vallum.detectors.rules import RuleFileError, bundled_rule_path, ensure_unique, load_rule_file
from vallum.errors import VallumError

ControlKind = Literal["detector", "feature", "limit", "planned"]


class ComplianceError(VallumError):
    """A compliance mapping is invalid, or the report was asked about a gateway feature it does not know."""


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Control(_Data):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    name: str = Field(min_length=1)
    kind: ControlKind
    core: bool = False
    advice: str = Field(min_length=1)
    detector: str | None = None
    category: str | None = None
    sources: tuple[Source, ...] = ()
    feature: str | None = None

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> Control:
        needs = {"detector": ("detector", "category", "sources"), "feature": ("feature",)}.get(self.kind, ())
        for name in ("detector", "category", "sources", "feature"):
            given = bool(getattr(self, name))
            if given != (name in needs):
                verb = "needs" if name in needs else "takes no"
                raise ValueError(f"control {self.id}: kind {self.kind} {verb} `{name}`")
        return self


class Observation(_Data):
    """Events of one type: findings of a category (all subtypes, or the listed ones), or a refusal code."""

    category: str | None = None
    subtypes: tuple[str, ...] = ()
    code: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Observation:
        if (self.category is None) == (self.code is None):
            raise ValueError("an observation names either a category or a code")
        if self.code is not None and self.subtypes:
            raise ValueError(f"observation of code {self.code}: subtypes belong to categories")
        return self

    def matches_finding(self, category: str, subtype: str | None) -> bool:
        return category == self.category and (not self.subtypes or subtype in self.subtypes)


class Risk(_Data):
    id: str = Field(pattern=r"^[A-Z]+\d+$")
    name: str = Field(min_length=1)
    summary: str = Field(min_length=1)
    controls: tuple[Control, ...] = Field(min_length=1)
    observe: tuple[Observation, ...] = ()

    @model_validator(mode="after")
    def _control_ids_are_unique(self) -> Risk:
        ensure_unique((c.id for c in self.controls), f"{self.id} control id")
        return self


class RiskMapping(_Data):
    version: int = Field(ge=1)
    framework: str
    edition: str
    reference: str
    features: dict[str, str]
    risks: tuple[Risk, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_are_known(self) -> RiskMapping:
        ensure_unique((r.id for r in self.risks), "risk id")
        for risk in self.risks:
            for control in risk.controls:
                if control.feature is not None and control.feature not in self.features:
                    raise ValueError(f"{risk.id} control {control.id}: unknown feature {control.feature!r}")
        return self


def load_mapping(path: str | Path | None = None) -> RiskMapping:
    """A mapping file, or the bundled OWASP Top 10 for LLM Applications (2025) one."""
    if path is None:
        return _bundled()
    return _load(Path(path))


@cache
def _bundled() -> RiskMapping:
    return _load(bundled_rule_path("owasp_llm_2025"))


def _load(path: Path) -> RiskMapping:
    try:
        return load_rule_file(path, RiskMapping)
    except RuleFileError as exc:
        raise ComplianceError(str(exc)) from exc
