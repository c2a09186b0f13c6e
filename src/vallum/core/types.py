"""Hot-path value types: messages in, findings and verdicts out."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Source(StrEnum):
    """Where a piece of text came from; decides how much it is trusted."""

    USER = "user"
    SYSTEM = "system"
    RETRIEVAL = "retrieval"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    MODEL_OUTPUT = "model_output"

    @property
    def is_data(self) -> bool:
        """Content that should be data, never instructions (indirect-injection surface)."""
        return self in (Source.RETRIEVAL, Source.TOOL_RESULT)


class Action(StrEnum):
    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.BLOCK: 3}


class Severity(IntEnum):
    """CRS-style severities; the value is the anomaly weight a finding contributes."""

    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


@dataclass(frozen=True, slots=True)
class Identity:
    tenant: str | None = None
    user: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    source: Source = Source.USER
    role: str = "user"
    identity: Identity | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise TypeError(f"Message.text must be str, not {type(self.text).__name__}")
        if not isinstance(self.source, Source):
            object.__setattr__(self, "source", Source(self.source))


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range [start, end) in the original text."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"invalid span [{self.start}, {self.end})")


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    category: str
    severity: Severity
    score: float
    span: Span | None = None
    evidence: str = ""
    subtype: str | None = None
    rule_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "detector": self.detector,
            "category": self.category,
            "subtype": self.subtype,
            "rule_id": self.rule_id,
            "severity": self.severity.name.lower(),
            "score": round(self.score, 4),
            "span": [self.span.start, self.span.end] if self.span else None,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    scores: dict[str, float]
    categories: tuple[str, ...]
    findings: tuple[Finding, ...]
    policy_version: str
    redacted_text: str | None = None
    source: Source = Source.USER

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "action": self.action.value,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "categories": list(self.categories),
            "findings": [f.to_dict() for f in self.findings],
            "policy_version": self.policy_version,
        }
        if self.redacted_text is not None:
            out["redacted_text"] = self.redacted_text
        return out
