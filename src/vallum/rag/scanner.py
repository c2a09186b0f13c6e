"""Scan documents before they are indexed: the Guard over visible and hidden text, findings at file positions.

    scanner = DocumentScanner()                 # the rag-scan policy: default detectors plus PII
    report = scanner.scan_path("docs/page.html")
    report.action, [str(f.location) for f in report.findings]

Visible text and hidden text (everything the rendered document hides, joined) are scanned as retrieved
content (Source.RETRIEVAL). Hidden text is scanned by a Guard with one more detector,
`hidden_instructions`, and any injection finding there at or above the policy's flag threshold also
becomes a `hidden_instructions` finding: instructions nobody can see are an attack in themselves.
Long texts are scanned in overlapping windows, so a document of any size is scanned whole.
"""

from __future__ import annotations

import logging
import stat
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from vallum.core.guard import Guard
from vallum.core.policy import Policy
from vallum.core.types import Action, Finding, Message, Severity, Source, Span, Verdict
from vallum.detectors.rules import bundled_rule_path
from vallum.rag.document import ExtractedDocument, Format, HiddenSegment, Hiding, Location
from vallum.rag.errors import DocumentError
from vallum.rag.extract import extract
from vallum.rag.hidden import SUBTYPE as HIDDEN_INSTRUCTIONS
from vallum.rag.hidden import HiddenInstructionsDetector
from vallum.text.chunking import chunks

log = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024 * 1024
WINDOW_CHARS = 100_000
WINDOW_OVERLAP = 2_000  # an attack shorter than this lies whole inside one window
HIDDEN_SEPARATOR = "\n\n"
EXCERPT_CHARS = 120
PREVIEW_CHARS = 80
PROMOTION_SCORE = 0.9
SENSITIVE = frozenset({"pii", "secrets"})  # categories whose matched text a report never repeats
# Injection findings in hidden text from these detectors are not promoted: obfuscation is a trick, not
# an instruction, and the hidden_instructions detector's own findings need no promotion.
_NOT_PROMOTED = frozenset({"obfuscation", HIDDEN_INSTRUCTIONS})
Where = Literal["visible", "hidden"]


def rag_scan_policy() -> Policy:
    """The policy used when none is given (src/vallum/rules/rag_scan_policy.yaml)."""
    return Policy.from_file(bundled_rule_path("rag_scan_policy"))


@dataclass(frozen=True, slots=True)
class DocumentFinding:
    """A Guard finding, with where it sits in the document (and why it is hidden, if it is)."""

    finding: Finding  # span relative to the scanned text (the visible text, or the joined hidden text)
    where: Where
    location: Location
    hidden: Hiding | None = None
    element: str = ""
    excerpt: str = ""  # the matched text, for injection findings only (PII and secrets are not repeated)

    def to_dict(self) -> dict[str, object]:
        out = self.finding.to_dict()
        out["where"] = self.where
        out["location"] = self.location.to_dict()
        if self.hidden is not None:
            out["hidden"] = self.hidden.value
        if self.element:
            out["element"] = self.element
        if self.excerpt:
            out["excerpt"] = self.excerpt
        return out


@dataclass(frozen=True, slots=True)
class HiddenContent:
    """One hidden segment as reported: reviewers see what is hidden even where it is harmless."""

    reason: Hiding
    element: str
    location: Location
    chars: int
    preview: str

    def to_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason.value,
            "element": self.element,
            "location": self.location.to_dict(),
            "chars": self.chars,
            "preview": self.preview,
        }


@dataclass(frozen=True, slots=True)
class DocumentReport:
    path: str
    format: Format | None
    action: Action | None  # None when the document could not be read
    findings: tuple[DocumentFinding, ...] = ()
    hidden: tuple[HiddenContent, ...] = ()
    chars: int = 0
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def blocking(self) -> bool:
        """A document that must not be indexed as it is: blocked, or unreadable (fail closed)."""
        return self.error is not None or self.action is Action.BLOCK

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "path": self.path,
            "format": self.format.value if self.format else None,
            "action": self.action.value if self.action else "error",
        }
        if self.error is not None:
            out["error"] = self.error
            return out
        out["chars"] = self.chars
        out["findings"] = [f.to_dict() for f in self.findings]
        out["hidden"] = [h.to_dict() for h in self.hidden]
        if self.notes:
            out["notes"] = list(self.notes)
        return out


class DocumentScanner:
    """Extracts and scans documents; one instance loads its detectors once and scans any number."""

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        *,
        max_bytes: int = MAX_BYTES,
        window_chars: int = WINDOW_CHARS,
        window_overlap: int = WINDOW_OVERLAP,
    ) -> None:
        if policy is None:
            policy = rag_scan_policy()
        elif not isinstance(policy, Policy):
            policy = Policy.from_file(policy)
        self.policy = policy
        self.guard = Guard(policy)
        self.hidden_guard = Guard(policy, detectors=[*self.guard.detectors, HiddenInstructionsDetector()])
        self.max_bytes = max_bytes
        # Windows never exceed the policy's size limit, so no window is cut short or blocked as oversize.
        self.window_chars = min(window_chars, policy.limits.max_chars)
        self.window_overlap = min(window_overlap, self.window_chars // 2)

    def scan_path(self, path: str | Path, format: Format | str | None = None) -> DocumentReport:
        """Read, extract and scan one file; unreadable input gives a report with `error`, never an exception."""
        name = str(path)
        try:
            status = Path(path).stat()
            if not stat.S_ISREG(status.st_mode):
                raise DocumentError("not a regular file (a device, pipe or socket cannot be scanned)")
            size = status.st_size
            if size > self.max_bytes:
                raise DocumentError(f"the file has {size} bytes; the limit is {self.max_bytes} (max_bytes)")
            data = Path(path).read_bytes()
        except DocumentError as exc:
            return DocumentReport(name, None, None, error=exc.reason)
        except OSError as exc:
            return DocumentReport(name, None, None, error=f"cannot read the file: {exc.strerror or exc}")
        return self.scan_bytes(data, name, format)

    def scan_bytes(
        self, data: bytes, name: str = "<document>", format: Format | str | None = None
    ) -> DocumentReport:
        if len(data) > self.max_bytes:
            return DocumentReport(name, None, None, error=f"{len(data)} bytes; the limit is {self.max_bytes}")
        try:
            document = extract(data, name, format)
        except DocumentError as exc:
            return DocumentReport(name, None, None, error=exc.reason)
        except Exception as exc:  # an extractor bug or a parser failure on hostile input: report, go on
            log.exception("extracting %s failed", name)
            return DocumentReport(name, None, None, error=f"extraction failed: {type(exc).__name__}: {exc}")
        return self.scan_document(document)

    def scan_text(
        self, text: str, name: str = "<text>", format: Format | str = Format.TEXT
    ) -> DocumentReport:
        """Scan a document held as a string (text, Markdown or HTML)."""
        return self.scan_bytes(text.encode("utf-8", "surrogatepass"), name, format)

    def scan_document(self, document: ExtractedDocument) -> DocumentReport:
        visible_verdicts, visible = self._scan(self.guard, document.visible)
        hidden_text, placed = _join_hidden(document.hidden)
        hidden_verdicts, hidden = self._scan(self.hidden_guard, hidden_text)
        hidden = self._promote(hidden)
        findings = [_visible_finding(document, f) for f in visible]
        findings += [_hidden_finding(document, hidden_text, placed, f) for f in hidden]
        findings = _scrubbed(
            findings, [*_sensitive(document.visible, visible), *_sensitive(hidden_text, hidden)]
        )
        findings.sort(key=lambda f: (f.location.start, -f.finding.score))
        withheld = {
            id(_segment_at(placed, f.span.start, f.span.end)[1])
            for f in hidden
            if f.category in SENSITIVE and f.span is not None and placed
        }
        action = max(
            (v.action for v in (*visible_verdicts, *hidden_verdicts)),
            key=lambda a: a.rank,
            default=Action.ALLOW,
        )
        action = max(action, self._action_of(hidden), key=lambda a: a.rank)
        return DocumentReport(
            document.name,
            document.format,
            action,
            tuple(findings),
            tuple(_hidden_content(document, s, id(s) in withheld) for s in document.hidden),
            len(document.visible) + len(hidden_text),
            document.notes,
        )

    def _scan(self, guard: Guard, text: str) -> tuple[list[Verdict], list[Finding]]:
        if not text.strip():
            return [], []
        windows = chunks(len(text), self.window_chars, self.window_overlap)
        verdicts = guard.scan_batch([Message(text[s:e], Source.RETRIEVAL) for s, e in windows])
        seen: set[tuple[str, str | None, str | None, int, int]] = set()
        found: list[Finding] = []
        for (offset, _), verdict in zip(windows, verdicts, strict=True):
            for finding in verdict.findings:
                span = finding.span
                if span is not None and offset:
                    finding = _with_span(finding, Span(span.start + offset, span.end + offset))
                key = (
                    finding.detector,
                    finding.rule_id,
                    finding.subtype,
                    finding.span.start if finding.span else -1,
                    finding.span.end if finding.span else -1,
                )
                if key not in seen:
                    seen.add(key)
                    found.append(finding)
        return verdicts, found

    def _promote(self, hidden: list[Finding]) -> list[Finding]:
        """Injection evidence in hidden text is also a hidden_instructions finding (unless it is one)."""
        threshold = self.policy.category_rule("injection", Source.RETRIEVAL).flag_at
        covered = [f.span for f in hidden if f.detector == HIDDEN_INSTRUCTIONS and f.span is not None]
        promoted = list(hidden)
        for finding in sorted(hidden, key=lambda f: -f.score):
            if (
                finding.category != "injection"
                or finding.detector in _NOT_PROMOTED
                or finding.score < threshold
            ):
                continue
            span = finding.span
            if span is not None and any(span.start < c.end and c.start < span.end for c in covered):
                continue  # already a hidden_instructions finding there
            evidence = f"hidden text carries instructions ({finding.detector}: {finding.evidence})"
            promoted.append(
                Finding(
                    detector=HIDDEN_INSTRUCTIONS,
                    category="injection",
                    severity=Severity.CRITICAL,
                    score=max(PROMOTION_SCORE, finding.score),
                    span=span,
                    evidence=evidence[:200],
                    subtype=HIDDEN_INSTRUCTIONS,
                    rule_id=finding.rule_id,
                )
            )
            if span is not None:
                covered.append(span)
        return promoted

    def _action_of(self, hidden: Sequence[Finding]) -> Action:
        """What the policy does about the strongest hidden_instructions finding (the Guard saw only the
        detector's own ones; promoted findings are decided here, by the same rule)."""
        score = max((f.score for f in hidden if f.subtype == HIDDEN_INSTRUCTIONS), default=0.0)
        rule = self.policy.category_rule("injection", Source.RETRIEVAL)
        if not rule.enabled or not self.policy.source_enabled(Source.RETRIEVAL):
            return Action.ALLOW
        if score >= rule.act_at:
            return rule.action
        return Action.FLAG if score >= rule.flag_at else Action.ALLOW


def _with_span(finding: Finding, span: Span) -> Finding:
    return replace(finding, span=span)


def _sensitive(text: str, findings: Sequence[Finding]) -> list[tuple[str, str]]:
    """(value, label) of every PII and secret found, so other findings' evidence can leave them out."""
    out: list[tuple[str, str]] = []
    for finding in findings:
        if finding.category in SENSITIVE and finding.span is not None:
            value = text[finding.span.start : finding.span.end]
            if len(value) >= 4:
                out.append((value, f"<{(finding.subtype or finding.category).upper()}>"))
    return out


def _scrubbed(findings: list[DocumentFinding], sensitive: list[tuple[str, str]]) -> list[DocumentFinding]:
    """Findings whose evidence and excerpt name no PII or secret value (a classifier window may hold one)."""
    if not sensitive:
        return findings
    sensitive.sort(key=lambda item: -len(item[0]))

    def scrub(text: str) -> str:
        for value, label in sensitive:
            if value in text:
                text = text.replace(value, label)
        return text

    out: list[DocumentFinding] = []
    for found in findings:
        evidence, excerpt = scrub(found.finding.evidence), scrub(found.excerpt)
        if evidence != found.finding.evidence or excerpt != found.excerpt:
            finding = replace(found.finding, evidence=evidence)
            found = replace(found, finding=finding, excerpt=excerpt)
        out.append(found)
    return out


def _join_hidden(segments: Sequence[HiddenSegment]) -> tuple[str, list[tuple[int, HiddenSegment]]]:
    """Hidden segments joined into one text (so instructions split over elements are seen together)."""
    parts: list[str] = []
    placed: list[tuple[int, HiddenSegment]] = []
    offset = 0
    for segment in segments:
        if parts:
            parts.append(HIDDEN_SEPARATOR)
            offset += len(HIDDEN_SEPARATOR)
        placed.append((offset, segment))
        parts.append(segment.text)
        offset += len(segment.text)
    return "".join(parts), placed


def _excerpt(text: str, finding: Finding) -> str:
    if finding.category != "injection" or finding.span is None:
        return ""
    piece = " ".join(text[finding.span.start : finding.span.end].split())
    return piece if len(piece) <= EXCERPT_CHARS else piece[: EXCERPT_CHARS - 1] + "…"


def _visible_finding(document: ExtractedDocument, finding: Finding) -> DocumentFinding:
    span = finding.span or Span(0, 0)
    start, end = document.visible_range(span.start, span.end)
    return DocumentFinding(
        finding, "visible", document.locate(start, end), excerpt=_excerpt(document.visible, finding)
    )


def _hidden_finding(
    document: ExtractedDocument, text: str, placed: list[tuple[int, HiddenSegment]], finding: Finding
) -> DocumentFinding:
    span = finding.span or Span(0, 0)
    offset, segment = _segment_at(placed, span.start, span.end)
    start, end = segment.source_range(span.start - offset, span.end - offset)
    return DocumentFinding(
        finding,
        "hidden",
        document.locate(start, end, approximate=segment.approximate),
        segment.reason,
        segment.element,
        _excerpt(text, finding),
    )


def _segment_at(
    placed: list[tuple[int, HiddenSegment]], start: int, end: int | None = None
) -> tuple[int, HiddenSegment]:
    """The segment of the joined hidden text that holds most of [start, end) (or the character at start)."""
    end = start + 1 if end is None or end <= start else end
    index = max(bisect_right([offset for offset, _ in placed], start) - 1, 0)
    best, best_overlap = placed[index], -1
    for offset, segment in placed[index:]:
        if offset >= end:
            break
        overlap = min(end, offset + len(segment.text)) - max(start, offset)
        if overlap > best_overlap:
            best, best_overlap = (offset, segment), overlap
    return best


def _hidden_content(document: ExtractedDocument, segment: HiddenSegment, withheld: bool) -> HiddenContent:
    preview = " ".join(segment.text.split())
    if withheld:
        preview = "[withheld: holds PII or a secret, see findings]"
    elif len(preview) > PREVIEW_CHARS:
        preview = preview[: PREVIEW_CHARS - 1] + "…"
    location = document.locate(segment.start, segment.end, approximate=segment.approximate)
    return HiddenContent(segment.reason, segment.element, location, len(segment.text), preview)
