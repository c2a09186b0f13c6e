"""Alert rules and webhook channels as data (YAML, validated), and how a rule's conditions read one event.

A rules file is either a YAML list of rules or a mapping with `rules:` and `channels:`. A rule holds
conditions over a single event (`match:`) and/or over the identity's risk assessment (`risk:`); every
condition given must hold, and a list of values means "any of these". `threshold:` turns a rule into
"at least N matching events from the same group within W seconds"; see vallum.monitor.alerts.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from vallum.errors import VallumError


class AlertRuleError(VallumError):
    """An alert rules file or channel is invalid; the message names the rule and field."""


IdentityField = Literal["tenant", "user", "api_key", "ip"]
IDENTITY_FIELDS: tuple[IdentityField, ...] = ("tenant", "user", "api_key", "ip")
Severity = Literal["info", "low", "medium", "high", "critical"]
RiskLevel = Literal["none", "elevated", "high"]
_LEVEL_RANK: dict[str, int] = {"none": 0, "elevated": 1, "high": 2}
_STAGES = ("input", "output")

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_COMPARISON = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Comparison:
    """`input.scores.injection >= 0.9`: a dotted path into the event (or a risk feature) against a number."""

    path: tuple[str, ...]
    op: str
    value: float

    def holds(self, root: Mapping[str, Any]) -> bool:
        found: Any = root
        for key in self.path:
            if not isinstance(found, Mapping):
                return False
            found = found.get(key)
        # A missing value, a string or a bool never satisfies a numeric comparison, whatever the operator.
        if not isinstance(found, int | float) or isinstance(found, bool):
            return False
        return _OPERATORS[self.op](float(found), self.value)


def _parse_comparison(text: object) -> object:
    if not isinstance(text, str):
        return text
    m = _COMPARISON.match(text)
    if m is None:
        raise ValueError(
            f"{text!r} is not a comparison: write '<field> <op> <number>', e.g. 'input.scores.injection >= 0.9',"
            " with op one of >=, >, <=, <, ==, !="
        )
    try:
        value = float(m.group(3))
    except ValueError:
        raise ValueError(f"{text!r}: {m.group(3)!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: the value must be a finite number")
    return Comparison(tuple(m.group(1).split(".")), m.group(2), value)


def _as_set(value: object) -> object:
    """A single value or a list of them; YAML writers use both."""
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list | tuple | set | frozenset):
        try:
            return frozenset(value)
        except TypeError:  # a nested list: let pydantic report the item that is not a string
            return list(value)
    return value


def _as_tuple(value: object) -> object:
    return (value,) if isinstance(value, str) else value


Values = Annotated[frozenset[str], BeforeValidator(_as_set)]
Compare = Annotated[Comparison, BeforeValidator(_parse_comparison)]
Action = Literal["allow", "flag", "redact", "block"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventMatch(_Strict):
    """Conditions over one event. Verdict conditions must hold together in one stage of the request."""

    stage: Literal["input", "output", "any"] = "any"
    action: Annotated[frozenset[Action], BeforeValidator(_as_set)] | None = None
    categories: Values | None = None
    subtypes: Values | None = None
    rule_ids: Values | None = None
    code: Values | None = None
    api: Values | None = None
    route: Values | None = None
    model: Values | None = None
    upstream: Values | None = None
    identity: dict[IdentityField, Values] | None = None
    shadow: bool | None = None
    where: Annotated[tuple[Compare, ...], BeforeValidator(_as_tuple)] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        for name, allowed in (
            ("code", self.code),
            ("api", self.api),
            ("route", self.route),
            ("model", self.model),
            ("upstream", self.upstream),
        ):
            if allowed is not None and event.get(name) not in allowed:
                return False
        if self.shadow is not None and bool(event.get("shadow")) != self.shadow:
            return False
        if self.identity:
            ident = event.get("identity")
            if not isinstance(ident, Mapping) or any(
                ident.get(f) not in allowed for f, allowed in self.identity.items()
            ):
                return False
        if not all(c.holds(event) for c in self.where):
            return False
        if (
            self.action is None
            and self.categories is None
            and self.subtypes is None
            and self.rule_ids is None
        ):
            return True
        stages = _STAGES if self.stage == "any" else (self.stage,)
        return any(self._stage_matches(event.get(s)) for s in stages)

    def _stage_matches(self, record: object) -> bool:
        if not isinstance(record, Mapping):
            return False
        if self.action is not None and record.get("action") not in self.action:
            return False
        if self.categories is not None and self.categories.isdisjoint(record.get("categories") or ()):
            return False
        if self.subtypes is None and self.rule_ids is None:
            return True
        findings = [f for f in record.get("findings") or () if isinstance(f, Mapping)]
        if self.subtypes is not None and not any(f.get("subtype") in self.subtypes for f in findings):
            return False
        return self.rule_ids is None or any(f.get("rule_id") in self.rule_ids for f in findings)


@dataclass(frozen=True, slots=True)
class RiskView:
    """What a rule reads of a risk assessment, whether it came as the analytics' Risk object or a dict."""

    score: float
    level: str
    features: Mapping[str, float]


def as_risk(risk: object) -> RiskView | None:
    if risk is None:
        return None
    if isinstance(risk, Mapping):
        return RiskView(
            float(risk.get("score", 0.0)), str(risk.get("level", "none")), risk.get("features") or {}
        )
    return RiskView(float(risk.score), str(risk.level), getattr(risk, "features", None) or {})  # type: ignore[attr-defined]


class RiskMatch(_Strict):
    """Conditions over the identity's risk assessment; a rule with these never fires without one."""

    min_score: float | None = Field(None, ge=0)
    min_level: RiskLevel | None = None
    features: Annotated[tuple[Compare, ...], BeforeValidator(_as_tuple)] = ()

    @model_validator(mode="after")
    def _not_empty(self) -> RiskMatch:
        if self.min_score is None and self.min_level is None and not self.features:
            raise ValueError("give at least one of min_score, min_level or features")
        return self

    def matches(self, risk: RiskView | None) -> bool:
        if risk is None:
            return False
        if self.min_score is not None and risk.score < self.min_score:
            return False
        if self.min_level is not None and _LEVEL_RANK.get(risk.level, 0) < _LEVEL_RANK[self.min_level]:
            return False
        return all(c.holds(risk.features) for c in self.features)


class Threshold(_Strict):
    count: int = Field(ge=1)
    window_s: float = Field(gt=0)


class AlertRule(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    description: str = ""
    severity: Severity = "medium"
    match: EventMatch | None = None
    risk: RiskMatch | None = None
    threshold: Threshold | None = None
    # Events count towards one window, and one alert is deduplicated, per distinct value of these fields;
    # an empty list makes the rule global (all identities together).
    group_by: tuple[IdentityField, ...] = IDENTITY_FIELDS
    dedupe_s: float = Field(300.0, ge=0)
    channels: Annotated[tuple[str, ...], BeforeValidator(_as_tuple)] = ()

    @model_validator(mode="after")
    def _has_condition(self) -> AlertRule:
        if self.match is None and self.risk is None:
            raise ValueError(
                "give `match:` and/or `risk:`; a rule without conditions would fire on every event"
            )
        return self

    def matches(self, event: Mapping[str, Any], risk: RiskView | None) -> bool:
        if self.match is not None and not self.match.matches(event):
            return False
        return self.risk is None or self.risk.matches(risk)


class ChannelConfig(_Strict):
    """A webhook. The URL of a Slack webhook is a secret: give `url_env`, the variable that holds it."""

    name: str = Field(min_length=1)
    kind: Literal["slack", "json"]
    url: str | None = Field(None, pattern=r"^https?://")
    url_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(default_factory=dict)  # header name -> variable holding its value
    per_minute: float = Field(20.0, gt=0)  # sustained alerts per minute on this channel
    burst: int = Field(5, ge=1)  # alerts that may go out at once after a quiet spell
    timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)

    @model_validator(mode="after")
    def _one_url(self) -> ChannelConfig:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        return self


class RuleSet(_Strict):
    rules: tuple[AlertRule, ...]
    # None when the file lists only rules (`vallum alerts test` needs no channels); then rule channels are
    # checked by whoever delivers.
    channels: tuple[ChannelConfig, ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        _unique("rule id", [r.id for r in self.rules])
        if self.channels is not None:
            names = [c.name for c in self.channels]
            _unique("channel name", names)
            for r in self.rules:
                missing = [c for c in r.channels if c not in names]
                if missing:
                    raise ValueError(f"rule {r.id!r} delivers to undefined channel(s) {', '.join(missing)}")
        return self


def _unique(what: str, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}")
        seen.add(n)


def parse_ruleset(data: object, source: str = "alert rules") -> RuleSet:
    """Validate rules given as a list or as {rules, channels}; errors name the rule and the field."""
    if isinstance(data, list):
        data = {"rules": data}
    if not isinstance(data, Mapping):
        raise AlertRuleError(
            f"{source}: expected a list of rules, or a mapping with `rules:` and `channels:`"
        )
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise AlertRuleError(f"{source}: {_where(first['loc'], data)}: {message}") from exc


def load_ruleset(path: Path) -> RuleSet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AlertRuleError(f"cannot read alert rules {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise AlertRuleError(f"{path}: not valid YAML: {exc}") from exc
    return parse_ruleset(data, str(path))


def _where(loc: tuple[int | str, ...], data: object) -> str:
    """`rules[2] (id 'X').match.where[0]` from pydantic's location tuple."""
    text = ""
    node: object = data
    for key in loc:
        if isinstance(key, int):
            text += f"[{key}]"
            node = node[key] if isinstance(node, list) and 0 <= key < len(node) else None
            if text == f"rules[{key}]" and isinstance(node, Mapping) and "id" in node:
                text += f" (id {node['id']!r})"
        elif isinstance(node, Mapping):
            text += ("." if text else "") + key
            node = node.get(key)
        # else: pydantic's name for a validator or type branch, not a field of the file
    return text or "(top level)"
