"""What the tool-call firewall decides: per-call decisions, and findings that say which value came from where."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vallum.core.types import Span


class Decision(StrEnum):
    """What happens to a tool call: run it, ask a human first, or refuse it."""

    ALLOW = "allow"
    CONFIRM = "confirm"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _DECISION_RANK[self]


_DECISION_RANK = {Decision.ALLOW: 0, Decision.CONFIRM: 1, Decision.BLOCK: 2}


class Effect(StrEnum):
    """What a finding does to its call: only report it (flag), ask a human, or block."""

    FLAG = "flag"
    CONFIRM = "confirm"
    BLOCK = "block"

    @property
    def decision(self) -> Decision:
        return Decision.ALLOW if self is Effect.FLAG else Decision(self.value)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a value was seen: a message of the conversation and the span of the value inside its text."""

    message: int
    role: str
    trust: str  # trusted | untrusted | directed | injected
    tool: str | None = None
    tool_call_id: str | None = None
    span: Span | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"message": self.message, "role": self.role, "trust": self.trust}
        if self.tool is not None:
            out["tool"] = self.tool
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.span is not None:
            out["span"] = [self.span.start, self.span.end]
        return out


@dataclass(frozen=True, slots=True)
class AgentFinding:
    """One reason behind a decision. `rule` is a stable id (VAL-AGT-xxxx, see rules/agent_tools.yaml)."""

    rule: str
    name: str
    effect: Effect
    message: str
    argument: str | None = None
    value: str | None = None
    kind: str | None = None
    origin: Origin | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rule": self.rule,
            "name": self.name,
            "effect": self.effect.value,
            "message": self.message,
        }
        if self.argument is not None:
            out["argument"] = self.argument
        if self.value is not None:
            out["value"] = self.value
        if self.kind is not None:
            out["kind"] = self.kind
        if self.origin is not None:
            out["origin"] = self.origin.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class CallDecision:
    id: str | None
    name: str | None
    action: Decision
    findings: tuple[AgentFinding, ...]
    side_effects: bool
    effects: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "action": self.action.value,
            "side_effects": self.side_effects,
            "effects": list(self.effects),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class AgentDecision:
    """The verdict on the calls of the conversation's last assistant message.

    `action` is the strictest of the calls' actions; `findings` are about the conversation as a whole
    (injections found in tool results, malformed messages).
    """

    action: Decision
    calls: tuple[CallDecision, ...]
    findings: tuple[AgentFinding, ...]
    policy_version: str

    @property
    def allowed(self) -> bool:
        return self.action is Decision.ALLOW

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "calls": [c.to_dict() for c in self.calls],
            "findings": [f.to_dict() for f in self.findings],
            "policy_version": self.policy_version,
        }


def strictest(decisions: list[Decision] | tuple[Decision, ...]) -> Decision:
    return max(decisions, key=lambda d: d.rank, default=Decision.ALLOW)
