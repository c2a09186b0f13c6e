"""The Guard: one pipeline that every entry point (library, CLI, gateway, agents, red team) calls."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vallum.core.detector import CascadeStage, Detector, create_detector
from vallum.core.policy import CategoryRule, Policy
from vallum.core.scoring import category_scores, decide
from vallum.core.types import Action, Finding, Message, Severity, Source, Span, Verdict
from vallum.redaction import redact
from vallum.text.normalize import NormalizedText, normalize
from vallum.vault import Vault

log = logging.getLogger(__name__)

# Texts longer than this are scanned on a worker thread by `ascan`, so the event loop stays responsive.
_OFFLOAD_CHARS = 32_768
GUARD_CATEGORY = "guard"

Scannable = str | Message


@dataclass(slots=True)
class _Pending:
    """One text on its way through the detectors of a batch."""

    index: int
    message: Message
    text: NormalizedText
    findings: list[Finding]


class Guard:
    """Runs the detectors a policy enables over a text and decides allow / flag / redact / block."""

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        *,
        detectors: Sequence[Detector] | None = None,
    ) -> None:
        if policy is None:
            policy = Policy()
        elif not isinstance(policy, Policy):
            policy = Policy.from_file(policy)
        self.policy = policy
        if detectors is None:
            detectors = [
                create_detector(name, cfg.options) for name, cfg in policy.detectors.items() if cfg.enabled
            ]
        self.detectors: tuple[Detector, ...] = tuple(detectors)
        self._rules: dict[tuple[str, Source], CategoryRule] = {}
        self._stages = tuple(d for d in self.detectors if isinstance(d, CascadeStage))
        self._fast = tuple(d for d in self.detectors if not isinstance(d, CascadeStage))
        # Every verdict scores the categories some running detector serves, 0.0 included: a category
        # no detector looks at is absent rather than falsely reassuring.
        self._categories = tuple(
            dict.fromkeys(
                c
                for d in self.detectors
                for c in d.categories
                if c not in policy.categories or policy.categories[c].enabled
            )
        )

    def needs_lookahead(self, source: Source) -> bool:
        """Whether a detector for `source` reads across words, so a stream must be held back in full before
        it is released (see `vallum.core.streaming`)."""
        return any(getattr(d, "needs_lookahead", False) for d in self.detectors if source in d.sources)

    def scan(
        self, item: Scannable, source: Source | str = Source.USER, *, vault: Vault | None = None
    ) -> Verdict:
        """Scan one text. Pass the request's `vault` so that placeholders can be restored in the answer."""
        message = _as_message(item, source)
        return self.scan_batch([message], vault=vault)[0]

    async def ascan(
        self, item: Scannable, source: Source | str = Source.USER, *, vault: Vault | None = None
    ) -> Verdict:
        import asyncio  # here, not at the top: it costs ~80 ms of start-up that sync users never need

        message = _as_message(item, source)
        if len(message.text) > _OFFLOAD_CHARS:
            return await asyncio.to_thread(self.scan, message, vault=vault)
        return self.scan(message, vault=vault)

    def scan_batch(
        self, items: Iterable[Scannable], source: Source | str = Source.USER, *, vault: Vault | None = None
    ) -> list[Verdict]:
        """Scan many texts at once; detectors that support batches score them in one vectorised pass.

        All texts of a batch share `vault`, as the messages of one chat request do.
        """
        messages = [_as_message(item, source) for item in items]
        verdicts: list[Verdict | None] = [None] * len(messages)
        pending: list[_Pending] = []
        for i, message in enumerate(messages):
            if not self.policy.source_enabled(message.source) or not message.text.strip():
                verdicts[i] = self._verdict(message, [], vault)
                continue
            text, limit_findings = self._apply_limits(message.text)
            if limit_findings and self.policy.limits.oversize == "block":
                verdicts[i] = self._verdict(message, limit_findings, vault)
                continue
            pending.append(_Pending(i, message, normalize(text), limit_findings))

        for paranoia in sorted({self.policy.paranoia_for(p.message.source) for p in pending}):
            group = [p for p in pending if self.policy.paranoia_for(p.message.source) == paranoia]
            for detector in self._fast:
                self._run(detector, group, paranoia)
            for stage in self._stages:
                self._run_stage(stage, group, paranoia)

        for p in pending:
            verdicts[p.index] = self._verdict(p.message, p.findings, vault)
        return [v for v in verdicts if v is not None]

    def _run_stage(self, stage: CascadeStage, group: list[_Pending], paranoia: int) -> None:
        """Run a slow detector only where the fast ones left a category score inside its band; there it decides."""
        low, high = stage.band
        unsure = []
        for p in group:
            if p.message.source not in stage.sources:
                continue  # the fast detectors' opinion stands where the stage cannot give its own
            scores = category_scores(p.findings, stage.categories)
            if any(low <= scores[c] < high for c in stage.categories):
                unsure.append(p)
        if not unsure:
            return
        for p in unsure:
            p.findings = [f for f in p.findings if f.detector not in stage.overrides]
        self._run(stage, unsure, paranoia)

    def _run(self, detector: Detector, group: list[_Pending], paranoia: int) -> None:
        served = [p for p in group if p.message.source in detector.sources]
        if not served:
            return
        texts = [p.text for p in served]
        sources = [p.message.source for p in served]
        try:
            batch = getattr(detector, "detect_batch", None)
            if batch is not None and len(served) > 1:
                results = batch(texts, sources, paranoia)
            else:
                results = [detector.detect(t, s, paranoia) for t, s in zip(texts, sources, strict=True)]
        except Exception as exc:
            # A failing detector must not take the application down; policy says which way to fail.
            log.exception("detector %s failed", detector.name)
            error = _detector_error(detector.name, exc, self.policy.fail_mode == "closed")
            results = [[error] for _ in served]
        for p, found in zip(served, results, strict=True):
            p.findings.extend(found)

    def _apply_limits(self, text: str) -> tuple[str, list[Finding]]:
        limit = self.policy.limits.max_chars
        if len(text) <= limit:
            return text, []
        blocking = self.policy.limits.oversize == "block"
        finding = Finding(
            detector="guard",
            category=GUARD_CATEGORY,
            severity=Severity.CRITICAL if blocking else Severity.NOTICE,
            score=1.0 if blocking else 0.0,
            span=Span(limit, len(text)),
            evidence=f"text has {len(text)} characters; policy limits.max_chars is {limit}",
            subtype="oversize",
        )
        return text[:limit], [finding]

    def _rule(self, category: str, source: Source) -> CategoryRule:
        # Merging a per-source override builds a pydantic model; once per (category, source) is enough.
        key = (category, source)
        rule = self._rules.get(key)
        if rule is None:
            rule = self._rules[key] = self.policy.category_rule(category, source)
        return rule

    def redact(
        self,
        text: str,
        findings: Iterable[Finding],
        categories: Iterable[str],
        source: Source,
        vault: Vault | None,
    ) -> str:
        """Rewrite the spans of the findings in `categories`, each with its category's redaction strategy."""
        wanted = set(categories)
        strategies = {c: self._rule(c, source).redaction for c in wanted}
        chosen = [f for f in findings if f.category in wanted]
        return redact(text, chosen, strategies, vault=vault).text

    def _verdict(self, message: Message, findings: list[Finding], vault: Vault | None) -> Verdict:
        scores = category_scores(findings, self._categories)
        action, drivers = decide(scores, lambda category: self._rule(category, message.source))
        if GUARD_CATEGORY in scores:
            # Guard findings (oversize input, failed detectors) are decided by limits and fail_mode alone.
            guard_score = scores.pop(GUARD_CATEGORY)
            if guard_score >= 1.0:
                action, drivers = Action.BLOCK, (GUARD_CATEGORY,)
        redacted = None
        if action is Action.REDACT:
            redacted = self.redact(message.text, findings, drivers, message.source, vault)
        ordered = tuple(sorted(findings, key=lambda f: (-f.score, f.span.start if f.span else -1)))
        return Verdict(
            action=action,
            scores=scores,
            categories=drivers,
            findings=ordered,
            policy_version=self.policy.label,
            redacted_text=redacted,
            source=message.source,
        )


def _as_message(item: Scannable, source: Source | str) -> Message:
    if isinstance(item, Message):
        return item
    if not isinstance(item, str):
        raise TypeError(f"scan() takes a str or Message, not {type(item).__name__}")
    return Message(item, source=Source(source))


def _detector_error(name: str, exc: Exception, fail_closed: bool) -> Finding:
    return Finding(
        detector=name,
        category=GUARD_CATEGORY,
        severity=Severity.CRITICAL,
        score=1.0 if fail_closed else 0.0,
        evidence=f"{type(exc).__name__}: {exc}"[:200],
        subtype="detector_error",
    )
