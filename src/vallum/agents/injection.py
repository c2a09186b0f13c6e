"""Indirect prompt injection in tool results: which spans of a result are the attacker's, and removing them.

Each tool result is scanned once by the Guard's injection detectors, as `Source.TOOL_RESULT` (results
are cached by content, so an agent that resends its history every turn pays for each result once). A
result the Guard flags is cut into units (sentences; lines of dumps, with folded YAML lines joined;
escaped \\n counts as a line break) and windows of three consecutive units are scanned as one batch
(a long text first in chunks, and only the windows of flagged chunks): single lines are too short for
the classifier to judge, a whole document too long to say where the injection is. In a run of flagged
windows, the units that every window holding them flags are injected (the units just before an
injection share some of its windows, never all); a run of one or two windows gives its middle units.
A result that no window confirms is reported but has no injected passage: on structured data (YAML
listings of transactions, calendars) the whole-text scan fires alone far more often than on real
injections, which their windows confirm.

Two widths come out. `regions`, each passage widened by a unit inside its paragraph, is what `sanitize`
removes. `reach` runs from a passage to the end of the item or field that holds it (at most 600
characters on), because the target of an injection (an address, an account) often sits in a plain
sentence after the imperative that the classifier fires on: values seen only there are the attacker's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from vallum.core.guard import Guard
from vallum.core.types import Finding, Severity, Source, Span

log = logging.getLogger(__name__)

INJECTION_CATEGORY = "injection"
REMOVED_MARKER = "[removed by vallum: suspected prompt injection]"
_LINE_BREAK = re.compile(r"\\n|\r?\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# A line that starts a new item rather than carrying on the previous sentence: a list bullet, a
# `key: value` field, markup, a table row, a numbered step.
_STRUCTURAL = re.compile(r"\s*(?:\\\s)?(?:[-*•+]\s|\d{1,3}[.)]\s|[\w\"'.\-]{1,48}:(?:\s|$)|[{}\[\]<#|])")
_UNIT_JUNK = " \t\\\"'-=*#>|,;:`"
WINDOW_UNITS = 3  # a flagged result is rescanned in windows of this many consecutive units
JOIN_GAP_UNITS = 3  # flagged units at most this many units apart belong to one injected passage
WIDEN_UNITS = 1  # units added on each side of a passage, within its paragraph, for what sanitize removes
REACH_UNITS = 2  # units after a passage whose values count as the attacker's (its target follows it)
REACH_CHARS = 600  # nor further than this past the passage, whatever the structure
MIN_PASSAGE_CHARS = 40  # shorter passages are not matched against arguments
_UNESCAPES = (("\\\n", ""), ("\\n", " "), ("\\t", " "), ('\\"', '"'), ("''", "'"))
CHUNK_UNITS = 24  # a long flagged text is first rescanned in chunks of this many units
MAX_UNITS = 4000  # beyond this, only units near the Guard's findings are rescanned
NEAR_CHARS = 4000


@dataclass(frozen=True, slots=True)
class ScannedText:
    """What the engine found in one tool result."""

    findings: tuple[Finding, ...]  # the Guard's injection findings, spans in the original text
    regions: tuple[Span, ...]  # the injected passages, merged and ordered: what `sanitize` removes
    scanned: int  # how many leading characters were scanned (less than the length when oversize)
    error: str | None = None  # the engine failed on this text; the policy's fail mode decided the regions
    # The passages carried on by a unit or two inside the same item or field: values seen only here are
    # the attacker's (an injection's target often sits in a plain sentence after the imperative).
    reach: tuple[Span, ...] = ()
    cores: tuple[str, ...] = ()  # the passages as `passage_key`s, to recognise arguments that repeat one

    @property
    def injected(self) -> bool:
        return bool(self.regions)


class InjectionScanner:
    def __init__(
        self, guard: Guard, *, max_chars: int = 200_000, fail_closed: bool = True, cache_size: int = 4096
    ) -> None:
        self.guard = guard
        # Only the detectors that score injection run on tool results here: the others (secrets, PII,
        # leakage) answer other questions and would multiply the cost of scanning windows.
        injection = [d for d in guard.detectors if INJECTION_CATEGORY in d.categories]
        self._engine = Guard(guard.policy, detectors=injection) if injection else guard
        self.max_chars = max_chars
        self.fail_closed = fail_closed
        rule = guard.policy.category_rule(INJECTION_CATEGORY, Source.TOOL_RESULT)
        self.threshold = rule.act_at
        self._cache: OrderedDict[bytes, ScannedText] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def scan(self, texts: Sequence[str]) -> list[ScannedText]:
        """Scan tool results (cached by content); the uncached ones go through the Guard in one batch."""
        keys = [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts]
        results: list[ScannedText | None] = []
        with self._lock:
            for key in keys:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                results.append(hit)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            fresh = self._scan_uncached([texts[i] for i in todo])
            with self._lock:
                for i, scanned in zip(todo, fresh, strict=True):
                    results[i] = scanned
                    self._cache[keys[i]] = scanned
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [r for r in results if r is not None]

    def sanitize(self, text: str) -> tuple[str, list[Finding]]:
        """`text` with its injected regions replaced by a marker, and the findings that located them."""
        scanned = self.scan([text])[0]
        if not scanned.regions:
            return text, list(scanned.findings)
        pieces: list[str] = []
        at = 0
        for region in scanned.regions:
            pieces.append(text[at : region.start])
            pieces.append(REMOVED_MARKER)
            at = region.end
        pieces.append(text[at:])
        return "".join(pieces), list(scanned.findings)

    # ---- internals -------------------------------------------------------------------------------------

    def _scan_uncached(self, texts: list[str]) -> list[ScannedText]:
        heads = [t[: self.max_chars] for t in texts]
        try:
            verdicts = self._engine.scan_batch(heads, Source.TOOL_RESULT)
        except (
            Exception
        ) as exc:  # the Guard isolates detectors, but a broken Guard must not pass text as clean
            log.exception("guard failed on tool results")
            return [self._failed(t, f"{type(exc).__name__}: {exc}") for t in texts]
        out = []
        for text, head, verdict in zip(texts, heads, verdicts, strict=True):
            broken = [f for f in verdict.findings if f.subtype == "detector_error"]
            if broken and self.fail_closed:
                out.append(self._failed(text, broken[0].evidence))
                continue
            found = tuple(self._injection(verdict.findings))
            passages = self._regions(head, found) if found else _Passages((), (), ())
            out.append(
                ScannedText(found, passages.regions, len(head), reach=passages.reach, cores=passages.cores)
            )
        return out

    def _failed(self, text: str, why: str) -> ScannedText:
        if not self.fail_closed:
            return ScannedText((), (), min(len(text), self.max_chars), why)
        finding = Finding(
            detector="agent_firewall",
            category=INJECTION_CATEGORY,
            severity=Severity.CRITICAL,
            score=1.0,
            span=Span(0, len(text)),
            evidence=f"the engine could not scan this tool result ({why}); fail mode closed treats all of it as injected",
            subtype="scan_failed",
        )
        whole = (Span(0, len(text)),)
        return ScannedText((finding,), whole, 0, why, reach=whole)

    def _hot_windows(self, text: str, units: list[Span], windows: list[tuple[int, int]]) -> list[bool]:
        """Which windows the engine flags. A long text is first scanned in chunks of units (overlapping by
        a window), and only the windows inside flagged chunks are scanned: a listing of hundreds of records
        with one injected record costs a few chunk scans, not a scan per record."""
        n = len(units)
        live = [True] * n
        if n > 2 * CHUNK_UNITS:
            chunks = _chunks(n)
            verdicts = self._engine.scan_batch(
                [text[units[a].start : units[b - 1].end] for a, b in chunks], Source.TOOL_RESULT
            )
            live = [False] * n
            for (a, b), verdict in zip(chunks, verdicts, strict=True):
                if self._injection(verdict.findings):
                    live[a:b] = [True] * (b - a)
        todo = [k for k, (a, b) in enumerate(windows) if all(live[a:b])]
        hot = [False] * len(windows)
        if todo:
            verdicts = self._engine.scan_batch(
                [text[units[windows[k][0]].start : units[windows[k][1] - 1].end] for k in todo],
                Source.TOOL_RESULT,
            )
            for k, verdict in zip(todo, verdicts, strict=True):
                hot[k] = bool(self._injection(verdict.findings))
        return hot

    def _injection(self, findings: Sequence[Finding]) -> list[Finding]:
        return [f for f in findings if f.category == INJECTION_CATEGORY and f.score >= self.threshold]

    def _regions(self, text: str, found: tuple[Finding, ...]) -> _Passages:
        """The injected passages of a flagged text; none when no window of a few units confirms the finding."""
        anchors = [f.span for f in found if f.span is not None] or [Span(0, len(text))]
        units = split_units(text)
        if len(units) > MAX_UNITS:
            units = [
                u
                for u in units
                if any(u.start < a.end + NEAR_CHARS and a.start - NEAR_CHARS < u.end for a in anchors)
            ]
        if not units:
            return _Passages((), (), ())
        n = len(units)
        windows = (
            [(0, n)] if n <= WINDOW_UNITS else [(i, i + WINDOW_UNITS) for i in range(n - WINDOW_UNITS + 1)]
        )
        try:
            hot = self._hot_windows(text, units, windows)
        except Exception:
            log.exception("guard failed on the windows of a flagged tool result")
            hot = [True] * len(windows) if self.fail_closed else [False] * len(windows)
        hits = _core_units(hot, n)
        if not hits:
            return _Passages((), (), ())
        runs: list[list[int]] = [[hits[0], hits[0]]]
        for i in hits[1:]:
            if i - runs[-1][1] <= JOIN_GAP_UNITS:
                runs[-1][1] = i
            else:
                runs.append([i, i])
        regions, reach, cores = [], [], []
        for first, last in runs:
            lo, hi = first, last
            while (
                lo > 0 and first - lo < WIDEN_UNITS and not _paragraph_break(text, units[lo - 1], units[lo])
            ):
                lo -= 1
            while (
                hi < n - 1
                and hi - last < WIDEN_UNITS
                and not _paragraph_break(text, units[hi], units[hi + 1])
            ):
                hi += 1
            regions.append(Span(units[lo].start, units[hi].end))
            # The target of an injection follows its framing ("please do the following first: send ...").
            end = max(
                units[min(n - 1, last + REACH_UNITS)].end,
                _field_end(text, units[first].start, units[last].end),
            )
            reach.append(Span(units[first].start, end))
            core = passage_key(text[units[first].start : units[last].end])
            if len(core) >= MIN_PASSAGE_CHARS:
                cores.append(core)
        return _Passages(tuple(_merge(regions)), tuple(_merge(reach)), tuple(cores))


def _field_end(text: str, start: int, end: int) -> int:
    """Where the item or field holding an injected passage ends, at most REACH_CHARS past the passage.

    In a dump (YAML, indented JSON) the field ends at the next item or key that is not nested in it: one
    indented less than the passage's first line, or as little as the key line the passage starts on. In
    plain text nothing ends it but the cap.
    """
    limit = min(len(text), end + REACH_CHARS)
    line_start = text.rfind("\n", 0, start) + 1
    first_line = text[line_start : text.find("\n", line_start) if "\n" in text[line_start:] else len(text)]
    base = len(first_line) - len(first_line.lstrip(" \t"))
    on_key = _STRUCTURAL.match(first_line) is not None
    at = text.find("\n", end)
    while at != -1 and at < limit:
        line_end = text.find("\n", at + 1)
        line = text[at + 1 : line_end if line_end != -1 else len(text)]
        indent = len(line) - len(line.lstrip(" \t"))
        if line.strip() and _STRUCTURAL.match(line) and (indent < base or (on_key and indent <= base)):
            return at
        at = line_end
    return limit


def _chunks(n: int) -> list[tuple[int, int]]:
    step = CHUNK_UNITS - WINDOW_UNITS
    return [(a, min(n, a + CHUNK_UNITS)) for a in range(0, max(1, n - WINDOW_UNITS), step)]


def _core_units(hot: list[bool], n: int) -> list[int]:
    """The units that flagged windows put inside an injection.

    Window i holds units i .. i+WINDOW_UNITS-1. In a run of at least WINDOW_UNITS consecutive flagged
    windows, a unit is injected when every window that holds it is flagged: the units just before and
    after an injection share some flagged windows, never all. A shorter run (the classifier fired on one
    or two windows only) gives its middle units.
    """
    if len(hot) == 1:
        return list(range(n)) if hot[0] else []
    hits: list[int] = []
    i = 0
    while i < len(hot):
        if not hot[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(hot) and hot[j + 1]:
            j += 1
        if j - i + 1 >= WINDOW_UNITS:
            hits.extend(range(i + WINDOW_UNITS - 1, j + 1))
        else:
            hits.extend(range(i + 1, min(n, j + WINDOW_UNITS - 1)))
        i = j + 1
    return sorted(set(hits))


@dataclass(frozen=True, slots=True)
class _Passages:
    regions: tuple[Span, ...]
    reach: tuple[Span, ...]
    cores: tuple[str, ...]


def passage_key(text: str) -> str:
    """A passage reduced to its letters and digits, with the escapes of JSON and YAML dumps undone, so that
    an argument that repeats it (a channel whose name is the injection) can be recognised."""
    for escaped, plain in _UNESCAPES:
        text = text.replace(escaped, plain)
    return "".join(ch for ch in text.lower() if ch.isalnum())


def split_units(text: str) -> list[Span]:
    """Sentences of `text`: lines, with the folded continuation lines of YAML and wrapped prose joined,
    cut at sentence ends (escaped \\n of JSON and YAML dumps count as line breaks)."""
    lines: list[Span] = []
    breaks: list[str] = []  # the separator before each line
    start, separator = 0, ""
    for m in _LINE_BREAK.finditer(text):
        lines.append(Span(start, m.start()))
        breaks.append(separator)
        start, separator = m.end(), m.group()
    lines.append(Span(start, len(text)))
    breaks.append(separator)
    segments: list[Span] = []
    for line, separator in zip(lines, breaks, strict=True):
        body = text[line.start : line.end].strip(_UNIT_JUNK)
        if not body:
            segments.append(line)  # a blank line ends the segment before it
            continue
        if segments and _continues(text, segments[-1], line, separator):
            segments[-1] = Span(segments[-1].start, line.end)
        else:
            segments.append(line)
    units: list[Span] = []
    for segment in segments:
        at = segment.start
        for m in _SENTENCE_END.finditer(text, segment.start, segment.end):
            if text[at : m.start()].strip(_UNIT_JUNK):
                units.append(Span(at, m.start()))
            at = m.end()
        if text[at : segment.end].strip(_UNIT_JUNK):
            units.append(Span(at, segment.end))
    return units


def _continues(text: str, previous: Span, line: Span, separator: str) -> bool:
    """Whether `line` carries on the sentence of `previous` (a folded or wrapped line, not a new item)."""
    if separator not in ("\n", "\r\n"):
        return False
    before = text[previous.start : previous.end].rstrip(" \t\\\"'")
    if not before or before[-1] in ".!?:;>" or not text[previous.start : previous.end].strip():
        return False
    return _STRUCTURAL.match(text, line.start, line.end) is None


def _paragraph_break(text: str, before: Span, after: Span) -> bool:
    """Whether a blank line (real, or escaped as in JSON and YAML dumps) separates two units."""
    gap = text[before.end : after.start]
    return gap.count("\n") + gap.count("\\n") >= 2


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            last = merged.pop()
            span = Span(last.start, max(last.end, span.end))
        merged.append(span)
    return merged
