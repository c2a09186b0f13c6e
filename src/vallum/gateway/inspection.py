"""Running the Guard over a body's slots and applying what it decides, for one stage of one request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from vallum.core.guard import GUARD_CATEGORY, Guard
from vallum.core.types import Action, Identity, Message, Verdict
from vallum.gateway.errors import GatewayError, blocked
from vallum.gateway.metrics import GatewayMetrics
from vallum.gateway.slots import Slot
from vallum.redaction import Replacement, redact
from vallum.vault import Vault

Stage = Literal["input", "output"]
# Bodies bigger than this are scanned on a worker thread so that other requests keep flowing meanwhile.
_OFFLOAD_CHARS = 32_768


@dataclass(slots=True)
class StageRecord:
    """What one stage decided, for the request's event; never the text itself unless asked for, redacted."""

    action: Action = Action.ALLOW
    categories: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    texts: list[dict[str, Any]] = field(default_factory=list)
    guard_ms: float = 0.0
    fingerprint: str | None = None  # of the user's text, when analytics wants to spot near-duplicate attacks

    def add(self, verdicts: list[Verdict], slots: list[Slot], guard: Guard, keep_text: bool) -> None:
        for slot, verdict in zip(slots, verdicts, strict=True):
            if verdict.action.rank > self.action.rank:
                self.action = verdict.action
            for c in verdict.categories:
                if c not in self.categories:
                    self.categories.append(c)
            for category, score in verdict.scores.items():
                self.scores[category] = max(score, self.scores.get(category, 0.0))
            for f in verdict.findings:
                entry = f.to_dict()
                entry.pop("evidence")  # evidence quotes the text; the span says where to look
                entry["where"] = slot.where
                self.findings.append(entry)
            if keep_text:
                self.texts.append(_log_safe(guard, slot, verdict))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action.value,
            "categories": self.categories,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "findings": self.findings,
            "guard_ms": round(self.guard_ms, 3),
        }
        if self.texts:
            out["texts"] = self.texts
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint
        return out


async def inspect(
    guard: Guard,
    slots: list[Slot],
    *,
    stage: Stage,
    vault: Vault,
    identity: Identity,
    enforce: bool,
    record: StageRecord,
    metrics: GatewayMetrics,
    keep_text: bool,
) -> None:
    """Scan every slot; redact in place, or raise the block error, unless not enforcing (shadow mode)."""
    if not slots:
        return
    messages = [Message(s.text, source=s.source, identity=identity) for s in slots]
    started = time.perf_counter()
    if sum(len(s.text) for s in slots) > _OFFLOAD_CHARS:
        verdicts = await asyncio.to_thread(guard.scan_batch, messages, vault=vault)
    else:
        verdicts = guard.scan_batch(messages, vault=vault)
    elapsed = time.perf_counter() - started
    record.guard_ms += elapsed * 1000
    metrics.guard_seconds.labels(stage).observe(elapsed)
    record.add(verdicts, slots, guard, keep_text)
    count(metrics, stage, verdicts, guard.policy.fail_mode)
    if not enforce:
        return
    if any(v.action is Action.BLOCK for v in verdicts):
        raise blocked(stage, [v for v in verdicts if v.action is Action.BLOCK])
    for slot, verdict in zip(slots, verdicts, strict=True):
        if verdict.action is Action.REDACT and verdict.redacted_text is not None:
            slot.write(verdict.redacted_text)


def count(metrics: GatewayMetrics, stage: Stage, verdicts: list[Verdict], fail_mode: str) -> None:
    for verdict in verdicts:
        metrics.verdicts.labels(stage, verdict.action.value).inc()
        for category in verdict.categories:
            metrics.categories.labels(stage, category).inc()
        for f in verdict.findings:
            if f.category == GUARD_CATEGORY and f.subtype == "detector_error":
                metrics.detector_errors.labels(f.detector, fail_mode).inc()


def fail_unscannable(guard: Guard, reason: str) -> GatewayError | None:
    """Content the guard cannot read: refused when the policy fails closed, let through when it fails open."""
    if guard.policy.fail_mode == "open":
        return None
    return GatewayError(
        400, "unscannable_input", f"{reason}; send text, or use a policy with fail_mode: open."
    )


def _log_safe(guard: Guard, slot: Slot, verdict: Verdict) -> dict[str, Any]:
    """The text as the event log may keep it, with each finding's span in that text's own coordinates.

    Every category the policy redacts is redacted, whatever the score, so a value that policy protects never
    reaches the log (shadow mode and flags included). A finding inside a redacted stretch points at its
    replacement."""
    redacting = {
        f.category
        for f in verdict.findings
        if guard.policy.category_rule(f.category, slot.source).action is Action.REDACT
    }
    strategies = {c: guard.policy.category_rule(c, slot.source).redaction for c in redacting}
    result = redact(slot.text, [f for f in verdict.findings if f.category in redacting], strategies)
    spans = []
    for f in verdict.findings:
        if f.span is None:
            continue
        start, end = _moved(f.span.start, f.span.end, result.replacements)
        spans.append({"start": start, "end": end, "category": f.category, "rule_id": f.rule_id or f.detector})
    return {"where": slot.where, "text": result.text, "spans": spans}


def _moved(start: int, end: int, replacements: tuple[Replacement, ...]) -> tuple[int, int]:
    shift = 0
    for r in replacements:  # in text order, not overlapping
        if r.span.end <= start:
            shift += len(r.replacement) - (r.span.end - r.span.start)
        elif r.span.start < end:  # the finding overlaps this replacement: point at the replacement
            new_start = r.span.start + shift
            return new_start, new_start + len(r.replacement)
        else:
            break
    return start + shift, end + shift
