"""Agent policy: what the tool-call firewall allows, per tool and by default. YAML, validated by pydantic.

```yaml
version: payments-agent-3
fail_mode: closed            # malformed input: closed (block), confirm (ask a human) or open (allow, reported)
unknown_tools: block         # a call to a tool the request did not offer
injection:
  action: sanitize           # block: no call after an injected tool result; sanitize: only calls that use
                             # the injected spans are stopped; flag: injections are reported, values from
                             # them count as merely untrusted
data_flow:
  injected_value: block
  untrusted_destination: block
  unknown_destination: flag
  sensitive_egress: confirm
  unsupported_action: confirm
tools:
  send_money:
    action: auto             # auto (the rules decide) | allow | deny | confirm
    side_effects: true       # override the inferred class
    effects: [payment]
    arguments:
      schema: {type: object, properties: {amount: {type: number, maximum: 500}}}
      patterns: {subject: '[A-Za-z0-9 .,-]{0,80}'}        # RE2, must match the whole string
      allow: {recipient: [GB29NWBK60161331926819]}        # values, domains (example.com), paths (/srv/*)
    rate_limit: {calls: 5, per_seconds: 3600}
  get_*: {action: allow}     # names may be globs (* and ?); an exact name wins over a glob
```

`action: allow` means the tool runs without the data-flow and request checks (its argument rules and rate
limit still apply); `deny` blocks every call; `confirm` asks a human for every call (the other rules can
still block it).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import re2
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vallum.core.policy import Policy, parse_yaml_model, read_yaml_model
from vallum.detectors.rules import compiled_in_re2

Verdict = Literal["allow", "confirm", "block"]
Reaction = Literal["allow", "flag", "confirm", "block"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RateLimit(_Strict):
    calls: int = Field(gt=0)
    per_seconds: float = Field(gt=0)
    # identity: one budget per identity (tenant/user/key) and tool; tool: one budget per tool for everyone
    by: Literal["identity", "tool"] = "identity"


class ArgumentRules(_Strict):
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    patterns: dict[str, str] = Field(default_factory=dict)
    allow: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("json_schema")
    @classmethod
    def _schema_is_valid(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                validators.validator_for(schema).check_schema(schema)
            except jsonschema_exceptions.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        return schema

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: dict[str, str]) -> dict[str, str]:
        compiled_in_re2(tuple(patterns.values()))
        return patterns


class ToolPolicy(_Strict):
    action: Literal["auto", "allow", "deny", "confirm"] = "auto"
    side_effects: bool | None = None
    effects: tuple[str, ...] | None = None
    # Results of this tool are as trusted as the user's own words (e.g. the application's own user profile).
    trust_results: bool = False
    arguments: ArgumentRules = Field(default_factory=ArgumentRules)
    rate_limit: RateLimit | None = None


class DataFlowRules(_Strict):
    # A value (any call) found only inside an injected span of a tool result.
    injected_value: Verdict = "block"
    # A side-effecting call's destination (address, account, URL, phone, path) seen only in untrusted
    # content that the user did not point the agent at.
    untrusted_destination: Verdict = "block"
    # A side-effecting call's destination that appears nowhere in the conversation.
    unknown_destination: Reaction = "flag"
    # A payment card number in a side-effecting call that the user did not give.
    sensitive_egress: Reaction = "confirm"
    # A side-effecting call whose effect the user's request does not ask for.
    unsupported_action: Reaction = "confirm"
    # Tool results of calls whose arguments the user gave count as directed (see provenance.py).
    directed_sources: bool = True


class InjectionRules(_Strict):
    action: Literal["block", "flag", "sanitize"] = "sanitize"


class AgentLimits(_Strict):
    # Longer tool results are scanned up to here; the rest is untrusted and never a directed source.
    max_tool_result_chars: int = Field(200_000, gt=0)
    max_calls: int = Field(128, gt=0)  # calls in one assistant message beyond this are blocked


class AgentPolicy(_Strict):
    version: str = "default"
    fail_mode: Literal["closed", "confirm", "open"] = "closed"
    unknown_tools: Verdict = "block"
    tools: dict[str, ToolPolicy] = Field(default_factory=dict)
    default_rate_limit: RateLimit | None = None
    data_flow: DataFlowRules = Field(default_factory=DataFlowRules)
    injection: InjectionRules = Field(default_factory=InjectionRules)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    # The Guard policy used on tool results (default: the built-in one).
    guard: Policy | None = None

    @cached_property
    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @cached_property
    def label(self) -> str:
        return f"{self.version}@{self.digest}"

    @cached_property
    def _globs(self) -> tuple[tuple[Any, ToolPolicy], ...]:
        return tuple(
            (re2.compile(glob_to_re2(name)), rule)
            for name, rule in self.tools.items()
            if "*" in name or "?" in name
        )

    def tool(self, name: str) -> ToolPolicy | None:
        """The rule for a tool: its exact entry, else the first glob entry that matches, else None."""
        rule = self.tools.get(name)
        if rule is not None:
            return rule
        for pattern, candidate in self._globs:
            if pattern.fullmatch(name):
                return candidate
        return None

    @classmethod
    def from_yaml(cls, text: str, *, filename: str = "<agent policy>") -> AgentPolicy:
        return parse_yaml_model(cls, text, filename=filename, kind="agent policy")

    @classmethod
    def from_file(cls, path: str | Path) -> AgentPolicy:
        return read_yaml_model(cls, path, kind="agent policy")


def glob_to_re2(glob: str) -> str:
    """A shell-style glob (* and ? only) as an RE2 pattern; everything else is literal."""
    out = []
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re2.escape(ch) if not ch.isalnum() else ch)
    return "".join(out)
