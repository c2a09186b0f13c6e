"""What a blocking decision leaves in the audit log, taken from a gateway event without its text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PHASES = ("input", "output")


def is_blocking(event: Mapping[str, Any]) -> bool:
    """The policy decided to block the input or the output (also in shadow mode, where it was not enforced)."""
    return any(_phase(event, phase).get("action") == "block" for phase in _PHASES)


def block_detail(event: Mapping[str, Any]) -> dict[str, Any]:
    """Who was blocked, under which policy, for which categories and rules; never texts, spans or scores.

    `enforced` is false for decisions taken in shadow mode, which were recorded but not applied.
    """
    identity = event.get("identity") or {}
    phases = {}
    for name in _PHASES:
        phase = _phase(event, name)
        if phase.get("action") != "block":
            continue
        findings = [f for f in phase.get("findings") or [] if isinstance(f, Mapping)]
        phases[name] = {
            "categories": sorted({str(c) for c in phase.get("categories") or []}),
            "rules": sorted({str(f["rule_id"]) for f in findings if f.get("rule_id")}),
            "detectors": sorted({str(f["detector"]) for f in findings if f.get("detector")}),
        }
    return {
        "event": event.get("id"),
        "identity": {
            k: v for k, v in identity.items() if k in ("tenant", "user", "api_key", "ip") and v is not None
        },
        "policy_version": event.get("policy_version"),
        "route": event.get("route"),
        "model": event.get("model"),
        "status": event.get("status"),
        "code": event.get("code"),
        "enforced": not event.get("shadow", False),
        "phases": phases,
    }


def _phase(event: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    phase = event.get(name)
    return phase if isinstance(phase, Mapping) else {}
