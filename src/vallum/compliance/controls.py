"""How far a policy and the gateway's features put each mapped control into force."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from vallum.compliance.mapping import Control
from vallum.core.policy import Policy
from vallum.core.types import Action, Source

ControlState = Literal["enforced", "monitoring", "off", "not_available"]
_STRENGTH: dict[ControlState, int] = {"not_available": 0, "off": 1, "monitoring": 2, "enforced": 3}


def control_state(control: Control, policy: Policy, features: Mapping[str, bool]) -> tuple[ControlState, str]:
    """The control's state, and a note that says why (which detector, source or setting decided it)."""
    if control.kind == "planned":
        return "not_available", "not available in vallum yet"
    if control.kind == "limit":
        return "enforced", f"max_chars {policy.limits.max_chars}, oversize input: {policy.limits.oversize}"
    if control.kind == "feature":
        assert control.feature is not None
        return ("enforced", "on") if features.get(control.feature, False) else ("off", "off")
    return _detector_state(control, policy, shadow=features.get("shadow", False))


def _detector_state(control: Control, policy: Policy, *, shadow: bool) -> tuple[ControlState, str]:
    """The weakest state over the control's sources; the note lists what holds on each of them."""
    assert control.detector is not None and control.category is not None
    configured = policy.detectors.get(control.detector)
    if configured is None or not configured.enabled:
        return "off", f"detector {control.detector} is not enabled"
    by_note: dict[str, list[Source]] = {}
    weakest: ControlState = "enforced"
    for source in control.sources:
        state, note = _on_source(policy, control.category, source)
        by_note.setdefault(note, []).append(source)
        weakest = min(weakest, state, key=_STRENGTH.__getitem__)
    note = "; ".join(f"{what} on {', '.join(sources)}" for what, sources in by_note.items())
    if weakest == "enforced" and shadow:
        return "monitoring", f"{note}, but shadow mode enforces nothing"
    return weakest, note


def _on_source(policy: Policy, category: str, source: Source) -> tuple[ControlState, str]:
    if not policy.source_enabled(source):
        return "off", "not scanned"
    rule = policy.category_rule(category, source)
    if not rule.enabled:
        return "off", f"{category} disabled"
    if rule.action in (Action.BLOCK, Action.REDACT):
        return "enforced", f"{category}: {rule.action.value}"
    return "monitoring", f"{category}: only flagged ({rule.action.value})"
