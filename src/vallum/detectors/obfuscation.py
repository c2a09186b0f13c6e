"""Obfuscation detector: reports the normaliser's de-obfuscation signals as findings, so that hiding
tricks are flagged and not only undone."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Source
from vallum.detectors.rules import ObfuscationRule, bundled_rule_path, load_obfuscation_rules
from vallum.text.normalize import NormalizedText

MAX_EVIDENCE_CHARS = 80


class ObfuscationDetector:
    """One finding per signal whose kind the rule file enables at this paranoia level.

    Signals of one kind can be numerous (every zero-width character, say); only the first
    `max_findings_per_kind` of each kind are reported, enough to locate and explain them.
    """

    name: ClassVar[str] = "obfuscation"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(self, rule_file: str | Path | None = None, max_findings_per_kind: int = 8) -> None:
        path = rule_file if rule_file is not None else bundled_rule_path("obfuscation")
        self.rules = load_obfuscation_rules(path)
        self._rule_of_kind: dict[str, ObfuscationRule] = {rule.kind: rule for rule in self.rules}
        self.max_findings_per_kind = max_findings_per_kind

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        findings: list[Finding] = []
        reported: dict[str, int] = {}
        for signal in text.signals:
            rule = self._rule_of_kind.get(signal.kind)
            if rule is None or rule.paranoia > paranoia:
                continue
            count = reported.get(signal.kind, 0)
            if count >= self.max_findings_per_kind:
                continue
            reported[signal.kind] = count + 1
            hidden = text.original[signal.span.start : signal.span.end]
            findings.append(
                Finding(
                    detector=self.name,
                    category="injection",
                    severity=rule.severity_level,
                    score=rule.score,
                    span=signal.span,
                    evidence=f"{signal.kind}: {_visible(hidden)}",
                    subtype="obfuscation",
                    rule_id=rule.id,
                )
            )
        return findings


def _visible(hidden: str) -> str:
    """The original characters with invisible and control ones spelled out (they are the evidence)."""
    shown = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in hidden)
    if len(shown) <= MAX_EVIDENCE_CHARS:
        return shown
    return shown[: MAX_EVIDENCE_CHARS - 1] + "…"
