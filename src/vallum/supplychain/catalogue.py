"""The data model scanning judges by, shipped as YAML: rules/model_scan.yaml and rules/pickle_allowlist.yaml."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.core.types import Severity
from vallum.detectors.rules import SeverityName, bundled_rule_path, ensure_unique, load_rule_file


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRule(_Data):
    id: str = Field(pattern=r"^VAL-MDL-\d{4}$")
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    severity: SeverityName
    description: str = Field(min_length=1)

    @property
    def severity_level(self) -> Severity:
        return Severity[self.severity.upper()]


class TemplateData(_Data):
    dunder_names: frozenset[str]
    dangerous_globals: frozenset[str]
    dangerous_attributes: frozenset[str]
    format_methods: frozenset[str]
    known_filters: frozenset[str]
    known_tests: frozenset[str]
    attribute_filters: frozenset[str]


class PythonOperator(_Data):
    domain: str
    op: str


class OnnxData(_Data):
    standard_domains: frozenset[str]
    python_operators: tuple[PythonOperator, ...]


class KerasData(_Data):
    allowed_modules: tuple[str, ...]
    dangerous_names: frozenset[str]
    code_markers: frozenset[str]


class ModelScanCatalogue(_Data):
    version: int = 1
    rules: tuple[ModelRule, ...]
    templates: TemplateData
    onnx: OnnxData
    keras: KerasData

    @model_validator(mode="after")
    def _ids_are_unique(self) -> ModelScanCatalogue:
        ensure_unique((r.id for r in self.rules), "rule id")
        ensure_unique((r.name for r in self.rules), "rule name")
        return self

    def rule(self, rule_id: str) -> ModelRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"rule {rule_id} is not in rules/model_scan.yaml")


class Namespace(_Data):
    prefix: str = Field(min_length=1)
    names: tuple[str, ...]


class PickleAllowListFile(_Data):
    version: int = 1
    allow: dict[str, tuple[str, ...]]
    namespaces: tuple[Namespace, ...] = ()
    dangerous: dict[str, tuple[str, ...]]


@cache
def bundled_catalogue() -> ModelScanCatalogue:
    return load_rule_file(bundled_rule_path("model_scan"), ModelScanCatalogue)


@cache
def bundled_allow_list() -> PickleAllowListFile:
    return load_rule_file(bundled_rule_path("pickle_allowlist"), PickleAllowListFile)


def load_allow_list(path: Path) -> PickleAllowListFile:
    return load_rule_file(path, PickleAllowListFile)
