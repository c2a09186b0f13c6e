"""The compliance report: each risk's status, controls, observations and recommendations.

    report = build_report(policy, {"rate_limits": True, "token_budgets": True}, events=store_events)
    report.model_dump(mode="json")      # for the admin API
    render_markdown(report)             # for people

Status per risk: covered when every core control is enforced, partial when any control is enforced or
monitoring, not covered otherwise. Shadow mode turns every policy control into monitoring.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from vallum.compliance.controls import ControlState, control_state
from vallum.compliance.mapping import ComplianceError, ControlKind, Risk, RiskMapping, load_mapping
from vallum.compliance.observations import ObservedCount, Period, Tally, tally_counts, tally_events
from vallum.core.policy import Policy

Status = Literal["covered", "partial", "not_covered"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ControlReport(_Out):
    id: str
    name: str
    kind: ControlKind
    core: bool
    state: ControlState
    note: str


class Observed(_Out):
    events: int = 0
    blocked: int = 0
    redacted: int = 0
    flagged: int = 0
    allowed: int = 0
    not_enforced: int = 0  # decided in shadow mode: recorded, not applied
    by_type: dict[str, int] = {}


class RiskReport(_Out):
    id: str
    name: str
    summary: str
    status: Status
    controls: list[ControlReport]
    observed: Observed
    observable: bool  # whether any event type maps to this risk at all
    recommendations: list[str]


class ComplianceReport(_Out):
    framework: str
    edition: str
    reference: str
    generated_at: float
    period_start: float | None
    period_end: float | None
    policy: str
    features: dict[str, bool]
    summary: dict[Status, int]
    risks: list[RiskReport]


def build_report(
    policy: Policy,
    features: Mapping[str, bool],
    *,
    events: Iterable[Mapping[str, Any]] | None = None,
    counts: Iterable[ObservedCount] | None = None,
    period: tuple[float | None, float | None] | None = None,
    mapping: RiskMapping | None = None,
    now: float | None = None,
) -> ComplianceReport:
    """Assess `policy` and the gateway `features` against the mapping, with what was observed in `period`.

    Give raw `events` (gateway event dicts) or pre-aggregated `counts`, not both. Without `period`, the
    report spans the events' own times.
    """
    mapping = mapping or load_mapping()
    unknown = sorted(set(features) - set(mapping.features))
    if unknown:
        raise ComplianceError(
            f"unknown gateway feature(s) {', '.join(unknown)}; known: {', '.join(sorted(mapping.features))}"
        )
    if events is not None and counts is not None:
        raise ComplianceError("give events or pre-aggregated counts, not both")
    seen = Period()
    if counts is not None:
        tallies = tally_counts(mapping.risks, counts)
    else:
        tallies, seen = tally_events(mapping.risks, events or ())
    start, end = period if period is not None else (seen.start, seen.end)
    risks = [_assess(risk, policy, features, tallies[risk.id]) for risk in mapping.risks]
    summary: dict[Status, int] = {"covered": 0, "partial": 0, "not_covered": 0}
    for risk_report in risks:
        summary[risk_report.status] += 1
    return ComplianceReport(
        framework=mapping.framework,
        edition=mapping.edition,
        reference=mapping.reference,
        generated_at=time.time() if now is None else now,
        period_start=start,
        period_end=end,
        policy=policy.label,
        features={name: bool(features.get(name, False)) for name in mapping.features},
        summary=summary,
        risks=risks,
    )


def _assess(risk: Risk, policy: Policy, features: Mapping[str, bool], tally: Tally) -> RiskReport:
    controls = []
    for control in risk.controls:
        state, note = control_state(control, policy, features)
        controls.append(ControlReport(**_pick(control, "id", "name", "kind", "core"), state=state, note=note))
    core = [c for c in controls if c.core]
    if core and all(c.state == "enforced" for c in core):
        status: Status = "covered"
    elif any(c.state in ("enforced", "monitoring") for c in controls):
        status = "partial"
    else:
        status = "not_covered"
    observed = Observed(
        **_pick(tally, "events", "blocked", "redacted", "flagged", "allowed", "not_enforced"),
        by_type=dict(tally.by_type.most_common()),
    )
    return RiskReport(
        id=risk.id,
        name=risk.name,
        summary=risk.summary,
        status=status,
        controls=controls,
        observed=observed,
        observable=bool(risk.observe),
        recommendations=_recommendations(risk, controls, observed, status, features),
    )


def _recommendations(
    risk: Risk,
    controls: list[ControlReport],
    observed: Observed,
    status: Status,
    features: Mapping[str, bool],
) -> list[str]:
    advice = {control.id: control.advice for control in risk.controls}
    notes = []
    if features.get("shadow", False) and any(c.kind == "detector" for c in controls):
        notes.append("Shadow mode is on: the policy's decisions are recorded but not enforced.")
    for control in sorted(controls, key=lambda c: not c.core):  # core gaps first
        if control.state == "enforced":
            continue
        if control.state == "monitoring" and not features.get("shadow", False):
            notes.append(
                f"{control.name} only flags ({control.note}): set the action to block or redact to stop it."
            )
        elif control.state in ("off", "not_available"):
            notes.append(advice[control.id])
    if status == "not_covered" and observed.events:
        notes.append(f"Events of this risk were observed ({observed.events}) while no control is in force.")
    if observed.flagged and not (observed.blocked or observed.redacted):
        notes.append(
            f"All {observed.flagged} observed events were only flagged; review them and consider blocking."
        )
    return notes


def _pick(source: object, *names: str) -> dict[str, Any]:
    return {name: getattr(source, name) for name in names}
