"""Output handling detector: what the model's answer would do once it leaves the guard.

Three checks, each cheap on ordinary answers:
- links: images and links that carry data to a host off the allow-list (exfil_link), and, when the
  policy sets `allowed_domains`, any URL elsewhere (unlisted_url; blocking with `deny_unknown_links`);
- hidden characters: tag, bidi, invisible and control characters the normaliser found (hidden_chars);
- active content, only where the output would run: HTML/JS/CSS for `destination: browser`
  (active_html), shell one-liners for `destination: tool` or `shell` and for every tool call
  (shell_command).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from vallum.core.types import Finding, Severity, Source, Span
from vallum.detectors.active_content import ActiveContentMatcher, ActiveContentRule, load_output_rules
from vallum.detectors.links import FoundURL, Payload, data_in, find_urls, host_allowed
from vallum.detectors.rules import SEVERITY_SCORE
from vallum.errors import DetectorError
from vallum.text.normalize import NormalizedText

CATEGORY = "output"
DESTINATIONS = ("text", "browser", "tool", "shell")
# Canonical-view matching for active content is only needed where these tricks hid a keyword.
_DISGUISE_SIGNALS = frozenset({"invisible", "homoglyph", "mixed_script", "fullwidth", "tag_chars", "bidi"})
DEFAULT_MAX_URLS = 20_000
# Random-looking values: (minimum length, minimum bits per character) for fetched URLs and for links.
FETCHED_RANDOM = (16, 3.5)
LINK_RANDOM = (24, 4.0)


class OutputDetector:
    """Options: `allowed_domains`, `deny_unknown_links`, `destination` (text, browser, tool, shell)."""

    name: ClassVar[str] = "output"
    categories: ClassVar[tuple[str, ...]] = (CATEGORY,)
    sources: ClassVar[frozenset[Source]] = frozenset({Source.MODEL_OUTPUT, Source.TOOL_CALL})

    def __init__(
        self,
        allowed_domains: Sequence[str] = (),
        deny_unknown_links: bool = False,
        destination: str = "text",
        *,
        rule_file: str | Path | None = None,
        max_urls: int = DEFAULT_MAX_URLS,
        max_findings: int = 64,
    ) -> None:
        if isinstance(allowed_domains, str):
            raise DetectorError("option allowed_domains must be a list of domains, not one string")
        if destination not in DESTINATIONS:
            raise DetectorError(f"unknown destination {destination!r}; use one of {', '.join(DESTINATIONS)}")
        self.allowed = frozenset(d.lower().strip().lstrip("*.").rstrip(".") for d in allowed_domains)
        self.deny_unknown_links = deny_unknown_links
        self.destination = destination
        self.max_urls, self.max_findings = max_urls, max_findings
        rules = load_output_rules(rule_file)
        self._hidden = {rule.kind: rule for rule in rules.hidden_characters}
        self._active = ActiveContentMatcher(rules.rules)

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        findings = self._link_findings(text.original, paranoia)
        findings.extend(self._hidden_findings(text, paranoia))
        findings.extend(self._active_findings(text, source, paranoia))
        return findings[: self.max_findings]

    # ---- links ------------------------------------------------------------------------------------

    def _link_findings(self, original: str, paranoia: int) -> list[Finding]:
        findings = []
        for found in find_urls(original, self.max_urls):
            if self.allowed and host_allowed(found.host, self.allowed):
                continue
            finding = self._judge_url(found, paranoia)
            if finding is not None:
                findings.append(finding)
                if len(findings) >= self.max_findings:
                    break
        return findings

    def _judge_url(self, found: FoundURL, paranoia: int) -> Finding | None:
        kind = "image" if found.fetched else "link"
        min_chars, min_entropy = FETCHED_RANDOM if found.fetched else LINK_RANDOM
        payload = data_in(found, random_min_chars=min_chars, random_min_entropy=min_entropy)
        options: list[tuple[float, Severity, str, str]] = []
        if payload is not None:
            severity = _exfil_severity(payload, found.fetched, paranoia)
            if severity is not None:
                reason = f"{payload.where} carries {_DESCRIBE[payload.kind]} ({payload.length} chars)"
                options.append((SEVERITY_SCORE[severity], severity, "exfil_link", reason))
        if self.allowed:
            severity = Severity.ERROR if self.deny_unknown_links else Severity.NOTICE
            options.append((SEVERITY_SCORE[severity], severity, "unlisted_url", "host not on the allow-list"))
        if not options:
            return None
        score, severity, subtype, reason = max(options, key=lambda option: option[0])
        return Finding(
            detector=self.name,
            category=CATEGORY,
            severity=severity,
            score=score,
            span=Span(found.start, found.end),
            evidence=f"{kind} to {found.host or '?'}: {reason}",
            subtype=subtype,
        )

    # ---- hidden characters ------------------------------------------------------------------------

    def _hidden_findings(self, text: NormalizedText, paranoia: int) -> list[Finding]:
        findings = []
        for signal in text.signals:
            rule = self._hidden.get(signal.kind)
            if rule is None or rule.paranoia > paranoia:
                continue
            findings.append(
                Finding(
                    detector=self.name,
                    category=CATEGORY,
                    severity=rule.severity_level,
                    score=rule.score,
                    span=signal.span,
                    evidence=f"{signal.kind}: {signal.span.end - signal.span.start} hidden characters",
                    subtype="hidden_chars",
                    rule_id=rule.id,
                )
            )
        return findings

    # ---- active content ---------------------------------------------------------------------------

    def _active_findings(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        destinations = {self.destination} - {"text"}
        if source is Source.TOOL_CALL:
            destinations.add("tool")
        if not destinations:
            return []
        wanted = frozenset(destinations)
        found = {
            hit.rule.id: _active_finding(self.name, hit.rule, Span(hit.start, hit.end))
            for hit in self._active.find(text.original, wanted, paranoia)
        }
        if any(signal.kind in _DISGUISE_SIGNALS for signal in text.signals):
            view = text.primary
            for hit in self._active.find(view.text, wanted, paranoia):
                if hit.rule.id not in found:
                    found[hit.rule.id] = _active_finding(self.name, hit.rule, view.span(hit.start, hit.end))
        return list(found.values())


_DESCRIBE = {"text": "readable text", "encoded": "encoded text", "random": "a random-looking value"}


def _exfil_severity(payload: Payload, fetched: bool, paranoia: int) -> Severity | None:
    """Images leak without a click; links need one, so readable text in a link is only flagged at level 1
    (search links carry queries) and random values in links count from level 2 (ids in share links)."""
    if fetched:
        return Severity.CRITICAL if payload.kind != "random" else Severity.WARNING
    if payload.kind == "encoded":
        return Severity.ERROR
    if payload.kind == "text":
        return Severity.NOTICE if paranoia < 2 else Severity.WARNING
    if paranoia < 2:
        return None
    return Severity.NOTICE if paranoia < 3 else Severity.WARNING


def _active_finding(detector: str, rule: ActiveContentRule, span: Span) -> Finding:
    return Finding(
        detector=detector,
        category=CATEGORY,
        severity=rule.severity_level,
        score=rule.score,
        span=span,
        evidence=rule.description,
        subtype=rule.subtype,
        rule_id=rule.id,
    )
