"""Tool poisoning: instructions for the model hidden in an MCP server's tool definitions.

A tool's description, and the descriptions and titles inside its input schema, reach the model and
rarely the user. Each of these texts is scanned as untrusted data (`Source.TOOL_RESULT`) by the Guard's
signature detectors (injection signatures, obfuscation) plus `ToolPoisoningDetector`, whose signatures
(rules/mcp_tools.yaml) look for what no honest tool needs to say: keep this from the user, read ~/.ssh,
send every e-mail to this address, <IMPORTANT> tags. A text whose injection score reaches the policy's
threshold poisons its tool.

The learned injection classifiers do not take part: they tell instructions from data, and a description
is instructions by design. On honest descriptions they fire as often as on poisoned ones (the official
filesystem server's read_file scores 0.74, the fetch server's 0.99).

    scanner = DescriptionScanner(guard)
    scanner.scan({"name": "add", "description": "...", "inputSchema": {...}}) -> [AgentFinding, ...]
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.agents.findings import AgentFinding, Effect
from vallum.agents.injection import INJECTION_CATEGORY
from vallum.core.detector import ALL_SOURCES
from vallum.core.guard import Guard
from vallum.core.types import Finding, Source
from vallum.detectors.patternset import PatternSet, evidence, first_match_per_rule
from vallum.detectors.rules import (
    PatternRule,
    bundled_rule_path,
    ensure_unique,
    load_rule_file,
)
from vallum.text.normalize import NormalizedText

SUBTYPE = "tool_poisoning"
RULE_FILE = "mcp_tools"
# Keys of a JSON Schema whose string values are prose that the model reads.
_PROSE_KEYS = frozenset({"description", "title", "default", "examples", "enum", "const"})
SIGNATURE_DETECTORS = frozenset({"injection_signatures", "obfuscation"})
MAX_TEXTS_PER_TOOL = 256  # a schema with more prose than this is scanned up to here and reported


class FindingRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^VAL-MCP-00\d{2}$")
    name: str = Field(pattern=r"^[a-z_]+$")
    description: str = Field(min_length=1)


class PoisoningRule(PatternRule):
    id: str = Field(pattern=r"^VAL-MCP-01\d{2}$")
    description: str = Field(min_length=1)


class McpRuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    findings: tuple[FindingRule, ...]
    signatures: tuple[PoisoningRule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> McpRuleFile:
        ensure_unique([*(r.id for r in self.findings), *(r.id for r in self.signatures)], "rule id")
        ensure_unique((rule.name for rule in self.findings), "finding name")
        return self


@lru_cache(maxsize=1)
def bundled_rules() -> McpRuleFile:
    return load_rule_file(bundled_rule_path(RULE_FILE), McpRuleFile)


def mcp_finding(
    name: str,
    effect: Effect,
    message: str,
    *,
    argument: str | None = None,
    value: str | None = None,
    kind: str | None = None,
) -> AgentFinding:
    """A finding of the proxy's own catalogue (VAL-MCP-00xx), in the firewall's finding type."""
    rule = next((r for r in bundled_rules().findings if r.name == name), None)
    if rule is None:
        raise KeyError(f"no finding named {name!r} in rules/{RULE_FILE}.yaml")
    return AgentFinding(rule.id, name, effect, message, argument, value, kind)


class ToolPoisoningDetector:
    """Signatures of instructions that tool descriptions have no business giving (a Guard plugin)."""

    name: ClassVar[str] = SUBTYPE
    categories: ClassVar[tuple[str, ...]] = (INJECTION_CATEGORY,)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(self, rules: tuple[PoisoningRule, ...] | None = None) -> None:
        self.rules = rules if rules is not None else bundled_rules().signatures
        self._rule_of_pattern = [rule for rule in self.rules for _ in rule.patterns]
        self._patterns = PatternSet([pattern for rule in self.rules for pattern in rule.patterns])

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return [
            Finding(
                detector=self.name,
                category=INJECTION_CATEGORY,
                severity=rule.severity_level,
                score=rule.score,
                span=view.span(start, end),
                evidence=evidence(view.text[start:end]),
                subtype=SUBTYPE,
                rule_id=rule.id,
            )
            for rule, view, start, end in first_match_per_rule(self._patterns, self._rule_of_pattern, text)
        ]


def prose(tool: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The texts of a tool definition that the model reads, each with where it sits: ("description", ...),
    ("inputSchema.properties.path.description", ...)."""
    out: list[tuple[str, str]] = []
    for key in ("title", "description"):
        value = tool.get(key)
        if isinstance(value, str) and value.strip():
            out.append((key, value))
    for key in ("inputSchema", "outputSchema"):
        schema = tool.get(key)
        if isinstance(schema, Mapping):
            out.extend(_schema_prose(schema, key))
    return out


def _schema_prose(value: Any, path: str, prose_key: bool = False) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if prose_key and value.strip():
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _schema_prose(item, f"{path}.{key}", prose_key or key in _PROSE_KEYS)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _schema_prose(item, f"{path}[{i}]", prose_key)


class DescriptionScanner:
    """Scans tool definitions for poisoning; results are cached by the definition's content."""

    def __init__(self, guard: Guard, *, fail_closed: bool = True, cache_size: int = 1024) -> None:
        signatures = [d for d in guard.detectors if d.name in SIGNATURE_DETECTORS]
        self._engine = Guard(guard.policy, detectors=[*signatures, ToolPoisoningDetector()])
        self.threshold = guard.policy.category_rule(INJECTION_CATEGORY, Source.TOOL_RESULT).act_at
        self.fail_closed = fail_closed
        self._cache: OrderedDict[str, tuple[AgentFinding, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def scan(self, tool: Mapping[str, Any]) -> tuple[AgentFinding, ...]:
        """Findings for each poisoned text of one tool definition (empty when it is clean)."""
        key = hashlib.sha256(json.dumps(tool, sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        found = self._scan(tool)
        with self._lock:
            self._cache[key] = found
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def _scan(self, tool: Mapping[str, Any]) -> tuple[AgentFinding, ...]:
        name = str(tool.get("name"))
        texts = prose(tool)
        found: list[AgentFinding] = []
        if len(texts) > MAX_TEXTS_PER_TOOL:
            found.append(
                mcp_finding(
                    "poisoned_description",
                    Effect.FLAG,
                    f"tool {name!r} has {len(texts)} descriptive texts; the first {MAX_TEXTS_PER_TOOL} were scanned",
                )
            )
            texts = texts[:MAX_TEXTS_PER_TOOL]
        verdicts = self._engine.scan_batch([text for _, text in texts], Source.TOOL_RESULT)
        for (path, _), verdict in zip(texts, verdicts, strict=True):
            hits = [
                f for f in verdict.findings if f.category == INJECTION_CATEGORY and f.score >= self.threshold
            ]
            broken = [f for f in verdict.findings if f.subtype == "detector_error"]
            if not hits and not broken:
                continue
            best = max(hits or broken, key=lambda f: f.score)
            rules = ", ".join(dict.fromkeys(f.rule_id or f.detector for f in hits or broken))
            found.append(
                mcp_finding(
                    "poisoned_description",
                    Effect.BLOCK if hits or self.fail_closed else Effect.FLAG,
                    f"{path} of tool {name!r} carries instructions for the model ({rules})"
                    if hits
                    else f"{path} of tool {name!r} could not be scanned ({best.evidence})",
                    argument=path,
                    value=best.evidence[:120] if best.evidence else None,
                    kind="tool_definition",
                )
            )
        return tuple(found)
