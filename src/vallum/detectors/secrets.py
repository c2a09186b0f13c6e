"""Secrets detector: provider key formats, private keys, tokens and context-gated high-entropy values.

Secrets are case-exact, so every rule runs on the ORIGINAL text, not on the lower-cased canonical view.
One RE2 set finds which rules occur at all in a single linear pass; only those rules are searched again
for their matches, which then pass through the rule's context, entropy, shape and validator gates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import re2

from vallum.core.detector import ALL_SOURCES
from vallum.core.types import Finding, Severity, Source, Span
from vallum.detectors.entropy import is_hex_digest, is_identifier, is_uuid, longest_run, shannon_entropy
from vallum.detectors.patternset import DEFAULT_MAX_MEM
from vallum.detectors.rules import SEVERITY_SCORE
from vallum.detectors.secret_checks import VALIDATORS, Check
from vallum.detectors.secret_rules import SECRET_GROUP, SecretRule, SecretRuleFile, load_secret_rules
from vallum.errors import DetectorError
from vallum.text.normalize import NormalizedText

# From this paranoia level on, format-exact placeholders ("AKIAXXXXXXXXXXXXXXXX") are reported, weakly.
PLACEHOLDER_PARANOIA = 3
PLACEHOLDER_SCORE = 0.3
VERIFIED_SCORE = 0.99
# Long key material (PEM bodies, JWTs) has runs like AAAAAA: beyond this length only a value that is
# mostly one repeated character counts as a placeholder.
PLACEHOLDER_MAX_LENGTH = 128
PLACEHOLDER_MIN_RUN = 6
KEYWORD_WINDOW_BEFORE = 80
KEYWORD_WINDOW_AFTER = 40
# Bounds the work on adversarial input (a megabyte of near misses): candidates examined per rule.
MAX_CANDIDATES_PER_RULE = 10_000
ENCODING_ERRORS = "surrogatepass"
CODE_BRACKETS = frozenset("()[]{}")


@dataclass(frozen=True, slots=True)
class _Hit:
    rule: SecretRule
    start: int  # byte offsets into the UTF-8 text
    end: int
    value: str
    score: float
    severity: Severity


class _CompiledRule:
    __slots__ = ("group", "keywords", "regexp", "rule")

    def __init__(self, rule: SecretRule, options: re2.Options) -> None:
        self.rule = rule
        self.regexp = re2.compile(rule.pattern, options)
        self.group = self.regexp.groupindex.get(SECRET_GROUP, 0)
        self.keywords = tuple(keyword.encode() for keyword in rule.keywords)


class SecretsDetector:
    """Finds credentials in any text; findings carry the exact span of the value and a masked preview."""

    name: ClassVar[str] = "secrets"
    categories: ClassVar[tuple[str, ...]] = ("secrets",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def __init__(
        self,
        rule_file: str | Path | None = None,
        max_findings: int = 256,
        max_mem: int = DEFAULT_MAX_MEM,
    ) -> None:
        self.rule_file: SecretRuleFile = load_secret_rules(rule_file)
        self.max_findings = max_findings
        options = re2.Options()
        options.max_mem = max_mem
        self._compiled = [_CompiledRule(rule, options) for rule in self.rule_file.rules]
        self._set = re2.Set.SearchSet(options)
        for rule in self.rule_file.rules:
            self._set.Add(rule.pattern)
        try:
            self._set.Compile()
        except re2.error as exc:
            raise DetectorError(f"secret rules do not fit RE2's memory budget of {max_mem} bytes") from exc
        self._markers = tuple(marker.lower() for marker in self.rule_file.placeholder_markers)
        self._placeholder_values = frozenset(value.lower() for value in self.rule_file.placeholder_values)

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        return self.find(text.original, paranoia)

    def find(self, original: str, paranoia: int = 1) -> list[Finding]:
        """Findings for raw text (what `detect` does with the original of a normalised text)."""
        data = original.encode("utf-8", ENCODING_ERRORS)
        hits: list[_Hit] = []
        for index in sorted(self._set.Match(data) or ()):
            compiled = self._compiled[index]
            if compiled.rule.paranoia > paranoia:
                continue
            for hit in self._hits(compiled, data, paranoia):
                if not any(hit.start < kept.end and kept.start < hit.end for kept in hits):
                    hits.append(hit)
                    if len(hits) >= self.max_findings:
                        return self._findings(original, data, hits)
        return self._findings(original, data, hits)

    def is_placeholder(self, value: str) -> bool:
        run = longest_run(value)
        if len(value) > PLACEHOLDER_MAX_LENGTH:
            return run * 2 >= len(value)
        lowered = value.lower()
        return (
            run >= PLACEHOLDER_MIN_RUN
            or lowered in self._placeholder_values
            or any(marker in lowered for marker in self._markers)
        )

    def _hits(self, compiled: _CompiledRule, data: bytes, paranoia: int) -> Iterator[_Hit]:
        rule = compiled.rule
        for count, match in enumerate(compiled.regexp.finditer(data)):
            if count >= MAX_CANDIDATES_PER_RULE:
                return
            start, end = match.span(compiled.group)
            value = data[start:end].decode("utf-8", ENCODING_ERRORS)
            placeholder = self.is_placeholder(value)
            if placeholder and paranoia < PLACEHOLDER_PARANOIA:
                continue
            if compiled.keywords and not _near(data, start, end, compiled.keywords):
                continue
            if rule.min_entropy is not None and shannon_entropy(value) < rule.min_entropy:
                continue
            if _rejected_shape(rule, value, data, start):
                continue
            check = VALIDATORS[rule.validator](value) if rule.validator else None
            if check is Check.INVALID:
                continue
            score, severity = rule.score, rule.severity_level
            if placeholder:
                score, severity = PLACEHOLDER_SCORE, Severity.NOTICE
            elif check is Check.VALID:
                score = max(score, VERIFIED_SCORE)
            elif check is Check.UNVERIFIED:
                score = min(score, SEVERITY_SCORE[Severity.WARNING])
            yield _Hit(rule, start, end, value, score, severity)

    def _findings(self, original: str, data: bytes, hits: list[_Hit]) -> list[Finding]:
        offsets = _char_offsets(original, data, (o for hit in hits for o in (hit.start, hit.end)))
        return [
            Finding(
                detector=self.name,
                category="secrets",
                severity=hit.severity,
                score=hit.score,
                span=Span(offsets[hit.start], offsets[hit.end]),
                evidence=mask(hit.value),
                subtype=hit.rule.subtype,
                rule_id=hit.rule.id,
            )
            for hit in sorted(hits, key=lambda hit: hit.start)
        ]


def mask(value: str) -> str:
    """A preview that identifies a secret to its owner without disclosing it: a short prefix and its length."""
    shown = value[: min(4, len(value) // 4)]
    return f"{shown}… ({len(value)} chars)"


def _near(data: bytes, start: int, end: int, keywords: tuple[bytes, ...]) -> bool:
    context = data[max(0, start - KEYWORD_WINDOW_BEFORE) : end + KEYWORD_WINDOW_AFTER].lower()
    return any(keyword in context for keyword in keywords)


def _rejected_shape(rule: SecretRule, value: str, data: bytes, start: int) -> bool:
    for shape in rule.reject:
        if shape == "uuid" and is_uuid(value):
            return True
        if shape == "hex_digest" and is_hex_digest(value):
            return True
        if shape == "identifier" and is_identifier(value):
            return True
        if shape == "no_digits" and not any(char.isdigit() for char in value):
            return True
        if shape == "code_expression" and any(char in CODE_BRACKETS for char in value):
            return True
        if shape == "data_uri" and (b"base64," in data[max(0, start - 16) : start] or "base64," in value):
            return True
    return False


def _char_offsets(original: str, data: bytes, byte_offsets: Iterable[int]) -> dict[int, int]:
    """Character offset of each byte offset; one forward pass over the text, however many offsets."""
    wanted = sorted(set(byte_offsets))
    if len(data) == len(original):  # pure ASCII
        return {offset: offset for offset in wanted}
    result: dict[int, int] = {}
    chars = previous = 0
    for offset in wanted:
        chars += len(data[previous:offset].decode("utf-8", ENCODING_ERRORS))
        result[offset] = chars
        previous = offset
    return result
