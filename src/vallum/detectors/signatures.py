"""Signature detector: injection and jailbreak rules (data) matched in one RE2 pass per view."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Source
from vallum.detectors.patternset import DEFAULT_MAX_MEM, PatternSet, evidence, first_match_per_rule
from vallum.detectors.rules import Rule, bundled_rule_path, load_rules
from vallum.text.normalize import NormalizedText

PARANOIA_LEVELS = (1, 2, 3, 4)


class _LevelMatcher:
    """Every pattern of the rules enabled at one paranoia level, in one set."""

    def __init__(self, rules: Sequence[Rule], max_mem: int) -> None:
        self.rule_of_pattern: list[Rule] = []
        patterns: list[str] = []
        for rule in rules:
            for pattern in rule.patterns:
                patterns.append(pattern)
                self.rule_of_pattern.append(rule)
        self.patterns = PatternSet(patterns, max_mem=max_mem)


class InjectionSignatures:
    """Flags known injection, jailbreak, extraction and exfiltration phrasings, in many languages.

    Each view of the text (canonical, despaced, de-leeted, decoded ...) is scanned once by a single
    RE2 set; only the rules that hit are searched again for their span, which maps back to the original.
    One finding per rule: the first view (in normaliser order) that hits gives the span.
    """

    name: ClassVar[str] = "injection_signatures"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(
        self,
        rule_files: Sequence[str | Path] | None = None,
        max_mem: int = DEFAULT_MAX_MEM,
    ) -> None:
        paths = list(rule_files) if rule_files is not None else [bundled_rule_path("injection")]
        self.rules = load_rules(paths)
        self._max_mem = max_mem
        # Compiled on first use: a deployment runs one or two paranoia levels, and each set costs start-up time.
        self._levels: dict[int, _LevelMatcher] = {}

    def _matcher(self, paranoia: int) -> _LevelMatcher:
        level = min(max(paranoia, 1), PARANOIA_LEVELS[-1])
        if level not in self._levels:
            rules = [r for r in self.rules if r.paranoia <= level]
            self._levels[level] = _LevelMatcher(rules, self._max_mem)
        return self._levels[level]

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        matcher = self._matcher(paranoia)
        return [
            Finding(
                detector=self.name,
                category="injection",
                severity=rule.severity_level,
                score=rule.score,
                span=view.span(start, end),
                evidence=evidence(view.text[start:end]),
                subtype=rule.subtype,
                rule_id=rule.id,
            )
            for rule, view, start, end in first_match_per_rule(
                matcher.patterns, matcher.rule_of_pattern, text, lambda rule: rule.applies_to(source)
            )
        ]
