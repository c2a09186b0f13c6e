"""Scanning text that arrives in chunks (a model's streamed answer) without letting anything slip through.

The scanner holds back what is not yet settled (`vallum.core.settled`: the words that more text could still
turn into a secret, a number or a name), never more than `holdback` characters: a secret, an e-mail
address or a card number split across two chunks is only released once the chunk that completes it has
been scanned with it. With `lookahead` it holds back `holdback` characters always, so that a block comes
before any word of the passage that caused it; that is chosen by itself when a detector reads across
words (a protected system prompt's echo, named entities). Each step scans the unreleased text plus
`context` characters already released before it, so work per chunk is bounded and the total stays
linear in the length of the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from vallum.core.guard import Guard
from vallum.core.settled import open_construct, settled_length
from vallum.core.types import Action, Finding, Message, Severity, Source, Span
from vallum.vault import Vault

DEFAULT_HOLDBACK = 128
DEFAULT_CONTEXT = 128
# How far back the context reaches for a bracket still open; beyond it a construct is judged in part.
OPEN_CONTEXT = 1024
# Scan again only once this much new text waits beyond the hold-back: each scan then releases at least
# this much, which bounds the rescanning overhead (window / step) whatever the chunk size.
DEFAULT_MIN_STEP = 256


@dataclass(frozen=True, slots=True)
class StreamStep:
    text: str  # safe to forward now (redacted where policy says so)
    action: Action  # the strongest action the stream has called for so far
    findings: tuple[Finding, ...]  # new findings, spans in whole-stream coordinates
    stopped: bool  # blocked: nothing more will be released


class StreamScanner:
    def __init__(
        self,
        guard: Guard,
        *,
        source: Source = Source.MODEL_OUTPUT,
        holdback: int = DEFAULT_HOLDBACK,
        context: int = DEFAULT_CONTEXT,
        min_step: int = DEFAULT_MIN_STEP,
        first_step: int | None = None,
        vault: Vault | None = None,
        lookahead: bool | None = None,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`first_step` (default `min_step`) is the step before the first release: smaller gets the first
        words to a reader sooner, at the price of one more scan per stream. `lookahead` defaults to
        whether a detector of the guard for `source` asks for it. With `max_wait` (seconds), text ready to
        go is released once that long has passed since the last release, however little of it there is:
        a model writing slowly then reaches its reader at its own pace instead of in `min_step` bursts,
        while a fast stream, where `min_step` fills first, costs no more scans."""
        first_step = min_step if first_step is None else first_step
        if holdback < 1 or context < 0 or min_step < 1 or first_step < 1:
            raise ValueError("holdback, min_step and first_step must be >= 1 and context >= 0")
        self.guard, self.source, self.vault = guard, source, vault
        self.holdback, self.context, self.min_step, self.first_step = holdback, context, min_step, first_step
        self.lookahead = guard.needs_lookahead(source) if lookahead is None else lookahead
        self.max_wait, self._clock = max_wait, clock
        self._last_release = clock()
        self._released = ""  # tail of released original text, kept for detection context only
        self._released_total = 0  # characters released so far (stream offset of _pending[0])
        self._pending = ""
        self._reported: set[tuple[str | None, str, Severity, int, int]] = set()
        self.action = Action.ALLOW
        self.stopped = False

    def feed(self, chunk: str) -> StreamStep:
        if self.stopped:
            return StreamStep("", self.action, (), True)
        self._pending += chunk
        step = self.min_step if self._released_total else self.first_step
        waited = self.max_wait is not None and self._clock() - self._last_release >= self.max_wait
        if not waited and len(self._pending) < step + (self.holdback if self.lookahead else 0):
            return StreamStep("", self.action, (), False)
        ready = len(self._pending) - self.holdback if self.lookahead else self._settled()
        if ready < step and not (waited and ready > 0):
            return StreamStep("", self.action, (), False)
        return self._step(ready)

    def finish(self) -> StreamStep:
        """Scan and release whatever is still held back; call once when the stream ends."""
        if self.stopped:
            return StreamStep("", self.action, (), True)
        return self._step(len(self._pending))

    def _step(self, cut: int) -> StreamStep:
        """Scan what is pending and release its first `cut` characters, less any finding that crosses the cut."""
        window = self._released + self._pending
        offset = len(self._released)  # where _pending starts inside window
        verdict = self.guard.scan(Message(window, source=self.source), vault=self.vault)
        # Findings wholly inside already-released text were judged when it was released...
        fresh = [f for f in verdict.findings if f.span is None or f.span.end > offset]
        # ...unless what followed changed that judgement (a Markdown link defined early and used as an image
        # later): a finding there that is new, whole in the window and acted on can no longer be rewritten.
        late = [
            f
            for f in verdict.findings
            if f.span is not None
            and f.span.start > 0
            and f.span.end <= offset
            and f.category in verdict.categories
        ]
        new_findings = self._new(fresh, offset)
        # A finding judged before may be seen again in part or under another rule as the window moves on:
        # only one stronger than anything judged over that stretch counts.
        late_new = tuple(f for f in self._new(late, offset) if self._stronger_than_before(f))
        if verdict.action.rank > self.action.rank:
            self.action = verdict.action
        if verdict.action is Action.BLOCK or (late_new and verdict.action.rank >= Action.REDACT.rank):
            # What the whole answer calls for can no longer be done to all of it: the stream ends.
            self.stopped = True
            self._pending = ""
            self.action = Action.BLOCK
            return StreamStep("", self.action, new_findings + late_new, True)

        for f in fresh:  # never cut through a finding: hold it back whole until it can be judged whole
            if f.span is not None and f.span.start - offset < cut < f.span.end - offset:
                cut = max(0, f.span.start - offset)
        release = self._pending[:cut]
        if verdict.action is Action.REDACT and release:
            # A finding that began in released text (its head was judged harmless then) has the rest rewritten.
            inside = [_shift(f, -offset) for f in fresh if f.span is not None and f.span.end - offset <= cut]
            release = self.guard.redact(release, inside, verdict.categories, self.source, self.vault)
        # Also when a held finding kept everything back: max_wait then does not rescan it on every chunk.
        self._last_release = self._clock()
        released_original = self._pending[:cut]
        self._pending = self._pending[cut:]
        self._released = _context(self._released + released_original, self.context)
        self._released_total += cut
        return StreamStep(release, self.action, new_findings, False)

    def _settled(self) -> int:
        return max(settled_length(self._pending), len(self._pending) - self.holdback)

    def _stronger_than_before(self, finding: Finding) -> bool:
        """Whether `finding` (stream coordinates) is more severe than every finding of its category that was
        reported over any part of its stretch before it."""
        own = _key(finding)
        start, end = _bounds(finding.span)
        return all(
            key[2] < finding.severity
            for key in self._reported
            if key != own and key[1] == finding.category and key[3] < end and start < key[4]
        )

    def _new(self, findings: list[Finding], offset: int) -> tuple[Finding, ...]:
        base = self._released_total - offset
        out = []
        for f in findings:
            moved = _shift(f, base)
            key = _key(moved)
            if key not in self._reported:
                self._reported.add(key)
                out.append(moved)
        return tuple(out)


def _context(released: str, size: int) -> str:
    """The released text kept for the next scans: its last `size` characters, or from a construct still open
    (up to OPEN_CONTEXT), so that an image's "![" or a tag's "<" released under the hold-back's cap is still
    seen when its URL or attributes arrive."""
    if not size:
        return ""
    recent = released[-OPEN_CONTEXT:]
    opened = open_construct(recent)
    keep = size if opened is None else max(size, len(recent) - opened)
    return released[-keep:]


def _key(finding: Finding) -> tuple[str | None, str, Severity, int, int]:
    # Severity is part of what was judged: the same link seen again as an exfiltration is news.
    return (finding.rule_id or finding.detector, finding.category, finding.severity, *_bounds(finding.span))


def _bounds(span: Span | None) -> tuple[int, int]:
    return (span.start, span.end) if span else (-1, -1)


def _shift(finding: Finding, delta: int) -> Finding:
    if finding.span is None:
        return finding
    return replace(finding, span=Span(max(0, finding.span.start + delta), max(0, finding.span.end + delta)))
