"""Counting what the gateway observed against each risk: from raw events, or from counts made elsewhere.

From events, a risk counts each event once, however many of its findings match, with the strongest
action taken on a matching phase. Findings count only in a phase the policy flagged, redacted or
blocked: those below the flag threshold are noise, not observations. Requests the gateway refused
(rate limits, budgets, overload) count by their `code` as blocked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vallum.compliance.mapping import Observation, Risk

_RANK = {"allow": 0, "flag": 1, "redact": 2, "block": 3}
_ACTED = ("flag", "redact", "block")


@dataclass(frozen=True, slots=True)
class ObservedCount:
    """`count` observations of one type and outcome over the period, as a store's GROUP BY gives them.

    Counts are added as given: an event counted under two matching types counts twice for the risk.
    `enforced` is false for decisions taken in shadow mode.
    """

    action: str  # allow | flag | redact | block
    count: int
    category: str | None = None
    subtype: str | None = None
    code: str | None = None
    enforced: bool = True


@dataclass
class Tally:
    events: int = 0
    blocked: int = 0
    redacted: int = 0
    flagged: int = 0
    allowed: int = 0
    not_enforced: int = 0
    by_type: Counter[str] = field(default_factory=Counter)

    def add(self, action: str, count: int, *, enforced: bool) -> None:
        self.events += count
        bucket = {"block": "blocked", "redact": "redacted", "flag": "flagged"}.get(action, "allowed")
        setattr(self, bucket, getattr(self, bucket) + count)
        if not enforced:
            self.not_enforced += count


@dataclass
class Period:
    start: float | None = None
    end: float | None = None

    def include(self, when: object) -> None:
        if isinstance(when, int | float) and not isinstance(when, bool):
            self.start = when if self.start is None else min(self.start, when)
            self.end = when if self.end is None else max(self.end, when)


def tally_events(
    risks: Iterable[Risk], events: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Tally], Period]:
    """Per risk id, the events that observe it; and the period the events span."""
    risks = tuple(risks)
    tallies = {risk.id: Tally() for risk in risks}
    period = Period()
    for event in events:
        period.include(event.get("time"))
        observed = _observed_types(event)
        if not observed:
            continue
        enforced = not event.get("shadow", False)
        for risk in risks:
            matched = {
                kind: action
                for kind, (c, s, code, action) in observed.items()
                if _matches(risk.observe, c, s, code)
            }
            if not matched:
                continue
            tally = tallies[risk.id]
            tally.add(max(matched.values(), key=_RANK.__getitem__), 1, enforced=enforced)
            tally.by_type.update(matched.keys())
    return tallies, period


def tally_counts(risks: Iterable[Risk], counts: Iterable[ObservedCount]) -> dict[str, Tally]:
    risks = tuple(risks)
    tallies = {risk.id: Tally() for risk in risks}
    for row in counts:
        for risk in risks:
            if _matches(risk.observe, row.category, row.subtype, row.code):
                tallies[risk.id].add(row.action, row.count, enforced=row.enforced)
                tallies[risk.id].by_type[_type_name(row.category, row.subtype, row.code)] += row.count
    return tallies


def _observed_types(event: Mapping[str, Any]) -> dict[str, tuple[str | None, str | None, str | None, str]]:
    """Each observed type in the event ("injection/jailbreak", "code:rate_limited") with its action."""
    observed: dict[str, tuple[str | None, str | None, str | None, str]] = {}
    code = event.get("code")
    if isinstance(code, str) and code:
        observed[_type_name(None, None, code)] = (None, None, code, "block")
    for name in ("input", "output"):
        phase = event.get(name)
        if not isinstance(phase, Mapping) or phase.get("action") not in _ACTED:
            continue
        action = str(phase["action"])
        for finding in phase.get("findings") or []:
            if not isinstance(finding, Mapping) or not isinstance(finding.get("category"), str):
                continue
            category, subtype = finding["category"], finding.get("subtype")
            kind = _type_name(category, subtype, None)
            earlier = observed.get(kind)
            if earlier is None or _RANK[action] > _RANK[earlier[3]]:
                observed[kind] = (category, subtype, None, action)
    return observed


def _matches(
    observe: Iterable[Observation], category: str | None, subtype: str | None, code: str | None
) -> bool:
    for observation in observe:
        if observation.code is not None:
            if code == observation.code:
                return True
        elif category is not None and observation.matches_finding(category, subtype):
            return True
    return False


def _type_name(category: str | None, subtype: str | None, code: str | None) -> str:
    if code is not None:
        return f"code:{code}"
    return f"{category}/{subtype}" if subtype else str(category)
