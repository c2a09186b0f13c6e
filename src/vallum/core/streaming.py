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
from vallum.core.settled import settled_length
from vallum.core.types import Action, Finding, Message, Source, Span
from vallum.vault import Vault

DEFAULT_HOLDBACK = 128
DEFAULT_CONTEXT = 128
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
        self._reported: set[tuple[str | None, str, int, int]] = set()
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
        return self._step(final=False)

    def finish(self) -> StreamStep:
        """Scan and release whatever is still held back; call once when the stream ends."""
        if self.stopped:
            return StreamStep("", self.action, (), True)
        return self._step(final=True)

    def _step(self, *, final: bool) -> StreamStep:
        window = self._released + self._pending
        offset = len(self._released)  # where _pending starts inside window
        verdict = self.guard.scan(Message(window, source=self.source), vault=self.vault)
        # Findings wholly inside already-released text were judged when it was released.
        fresh = [f for f in verdict.findings if f.span is None or f.span.end > offset]
        new_findings = self._new(fresh, offset)
        if verdict.action.rank > self.action.rank:
            self.action = verdict.action
        if verdict.action is Action.BLOCK and any(f.category in verdict.categories for f in fresh):
            self.stopped = True
            self._pending = ""
            return StreamStep("", self.action, new_findings, True)

        if final:
            cut = len(self._pending)
        elif self.lookahead:
            cut = max(0, len(self._pending) - self.holdback)
        else:
            cut = self._settled()
        for f in fresh:  # never cut through a finding: hold it back whole until it can be judged whole
            if f.span is not None and f.span.start - offset < cut < f.span.end - offset:
                cut = max(0, f.span.start - offset)
        release = self._pending[:cut]
        if verdict.action is Action.REDACT and release:
            # A finding that began in released text (its head was judged harmless then) has the rest rewritten.
            inside = [_shift(f, -offset) for f in fresh if f.span is not None and f.span.end - offset <= cut]
            release = self.guard.redact(release, inside, verdict.categories, self.source, self.vault)
        if cut:
            self._last_release = self._clock()
        released_original = self._pending[:cut]
        self._pending = self._pending[cut:]
        self._released = (self._released + released_original)[-self.context :] if self.context else ""
        self._released_total += cut
        return StreamStep(release, self.action, new_findings, False)

    def _settled(self) -> int:
        return max(settled_length(self._pending), len(self._pending) - self.holdback)

    def _new(self, findings: list[Finding], offset: int) -> tuple[Finding, ...]:
        base = self._released_total - offset
        out = []
        for f in findings:
            moved = _shift(f, base)
            key = (moved.rule_id or moved.detector, moved.category, *(_bounds(moved.span)))
            if key not in self._reported:
                self._reported.add(key)
                out.append(moved)
        return tuple(out)


def _bounds(span: Span | None) -> tuple[int, int]:
    return (span.start, span.end) if span else (-1, -1)


def _shift(finding: Finding, delta: int) -> Finding:
    if finding.span is None:
        return finding
    return replace(finding, span=Span(max(0, finding.span.start + delta), max(0, finding.span.end + delta)))
