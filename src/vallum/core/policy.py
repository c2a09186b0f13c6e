"""Policy: what to scan, how findings add up, and what to do about them. YAML, validated by pydantic.

Thresholds apply to category scores in [0, 1]. A category at or above `act_at` takes the category's
`action`; at or above `flag_at` it is flagged. Per-source overrides let retrieved documents and tool
results (data that should not carry instructions) be judged differently from user requests. Paranoia
levels (1..4, as in OWASP CRS) decide which rules run and which calibrated operating point the classifier
uses; level 1 is tuned for the fewest false positives.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vallum.core.types import Action, Source
from vallum.datafiles import load_yaml
from vallum.errors import PolicyError

Paranoia = Literal[1, 2, 3, 4]


M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryRule(_Strict):
    enabled: bool = True
    flag_at: float = Field(0.35, ge=0.0, le=1.0)
    act_at: float = Field(0.5, ge=0.0, le=1.0)
    action: Action = Action.BLOCK
    # How `redact` rewrites a finding: a numbered placeholder (<EMAIL_1>, restorable from the vault),
    # a mask, a keyed hash, or a well-formed fake value.
    redaction: Literal["placeholder", "mask", "hash", "synthetic"] = "placeholder"

    @model_validator(mode="after")
    def _flag_not_above_act(self) -> CategoryRule:
        if self.flag_at > self.act_at:
            raise ValueError(f"flag_at ({self.flag_at}) must not exceed act_at ({self.act_at})")
        return self


class CategoryOverride(_Strict):
    """Per-source changes to a category rule; unset fields inherit the global rule."""

    enabled: bool | None = None
    flag_at: float | None = Field(None, ge=0.0, le=1.0)
    act_at: float | None = Field(None, ge=0.0, le=1.0)
    action: Action | None = None
    redaction: Literal["placeholder", "mask", "hash", "synthetic"] | None = None


class SourceRule(_Strict):
    enabled: bool = True
    paranoia: Paranoia | None = None
    categories: dict[str, CategoryOverride] = Field(default_factory=dict)


class DetectorConfig(_Strict):
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)


class Limits(_Strict):
    max_chars: int = Field(1_000_000, gt=0)
    oversize: Literal["block", "truncate"] = "block"


class Policy(_Strict):
    version: str = "default"
    paranoia: Paranoia = 1
    fail_mode: Literal["open", "closed"] = "closed"
    # The default runs every detector that costs microseconds per KB; PII (hundreds of microseconds per
    # KB, and its rules differ by jurisdiction) is switched on by naming it, see examples/policy.yaml.
    detectors: dict[str, DetectorConfig] = Field(
        default_factory=lambda: {
            name: DetectorConfig()
            for name in (
                "injection_classifier",
                "injection_signatures",
                "obfuscation",
                "secrets",
                "leakage",
                "output",
            )
        }
    )
    categories: dict[str, CategoryRule] = Field(
        default_factory=lambda: {
            "injection": CategoryRule(),
            "secrets": CategoryRule(action=Action.REDACT),
            "pii": CategoryRule(action=Action.REDACT),
            "leakage": CategoryRule(),
            "output": CategoryRule(action=Action.REDACT),
        }
    )
    sources: dict[Source, SourceRule] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)

    # A policy is frozen, so what is derived from it is computed once: these sit on every scan's path.
    @cached_property
    def digest(self) -> str:
        """Content hash: two policies with the same digest decide alike, whatever their version label."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @cached_property
    def label(self) -> str:
        return f"{self.version}@{self.digest}"

    def paranoia_for(self, source: Source) -> int:
        rule = self.sources.get(source)
        return rule.paranoia if rule and rule.paranoia else self.paranoia

    def source_enabled(self, source: Source) -> bool:
        rule = self.sources.get(source)
        return rule.enabled if rule else True

    def category_rule(self, category: str, source: Source) -> CategoryRule:
        base = self.categories.get(category, CategoryRule())
        override = self.sources.get(source)
        if override is None or category not in override.categories:
            return base
        changes = override.categories[category].model_dump(exclude_none=True)
        return base.model_copy(update=changes)

    @classmethod
    def from_yaml(cls, text: str, *, filename: str = "<policy>") -> Policy:
        return parse_yaml_model(cls, text, filename=filename, kind="policy")

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        return read_yaml_model(cls, path, kind="policy")


def read_yaml_model(model: type[M], path: str | Path, *, kind: str) -> M:
    """The YAML file at `path` as a `model`; an unreadable file is a PolicyError like a wrong key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read {kind} file {path}: {exc}") from exc
    return parse_yaml_model(model, text, filename=str(path), kind=kind)


def parse_yaml_model(model: type[M], text: str, *, filename: str, kind: str) -> M:
    """`text` as a `model`, or a PolicyError naming each wrong key with its line (`kind` names the document)."""
    try:
        root = yaml.compose(text)
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{filename}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{filename}: a {kind} must be a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_explain(exc, root, filename, kind)) from exc


def _explain(exc: ValidationError, root: yaml.Node | None, filename: str, kind: str) -> str:
    lines = [f"{filename}: invalid {kind}"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "<root>"
        line = _line_of(root, loc)
        where = f"line {line}: " if line else ""
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}{key}: {message}")
    return "\n".join(lines)


def _line_of(node: yaml.Node | None, path: list[str]) -> int | None:
    """1-based line of the deepest YAML node found along `path` (the offending key where it exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if str(kv[0].value) == part), None)
            if match is None:
                return line
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return line
    return line
