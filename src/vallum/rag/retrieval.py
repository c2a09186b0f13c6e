"""The retrieval guard: document ACLs first, then the Guard over what the caller may read.

    guard = RetrievalGuard(injection_action="sanitize")
    result = guard.filter(chunks, Requester(user="ann", groups=frozenset({"sales"})))
    prompt_context = result.texts

1. Every chunk whose ACL does not admit the requester (or that has no valid ACL) is dropped before
   anything else happens to it: it is never scanned, and its text appears in no finding or log line.
   Each drop is reported (chunk id and reason) in `result.dropped`.
2. The permitted chunks are scanned in one batch as retrieved content (Source.RETRIEVAL). The policy
   decides per chunk: block (dropped, reported with findings), flag (kept, findings attached), redact
   (kept, sanitised: the sentences that carry the injection replaced by a marker; invisible
   characters removed; PII and secrets replaced as the policy's redaction says) or allow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from vallum.core.guard import Guard
from vallum.core.policy import Policy
from vallum.core.types import Action, Finding, Message, Source, Verdict
from vallum.rag.acl import ACL, Requester
from vallum.rag.chunk import Chunk
from vallum.rag.errors import AclError
from vallum.redaction import redact
from vallum.vault import Vault

log = logging.getLogger(__name__)

InjectionAction = Literal["block", "flag", "sanitize"]
_ACTION_OF = {"block": Action.BLOCK, "flag": Action.FLAG, "sanitize": Action.REDACT}
MARKER = "[removed: suspected prompt injection]"
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
# Spans of these injection findings are the hiding characters themselves: removed exactly, no marker.
_EXACT_DETECTORS = frozenset({"obfuscation"})


class DropReason(StrEnum):
    ACL_DENIED = "acl_denied"
    ACL_INVALID = "acl_invalid"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class GuardedChunk:
    chunk: Chunk
    text: str  # what may go into the prompt: the chunk's text, sanitised where the policy says so
    action: Action
    findings: tuple[Finding, ...] = ()

    @property
    def sanitized(self) -> bool:
        return self.text != self.chunk.text

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.chunk.id,
            "action": self.action.value,
            "sanitized": self.sanitized,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class DroppedChunk:
    """A chunk kept out of the prompt; ACL drops carry no findings (the chunk was never scanned)."""

    id: str
    reason: DropReason
    detail: str
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "reason": self.reason.value, "detail": self.detail}
        if self.findings:
            out["findings"] = [f.to_dict() for f in self.findings]
        return out


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    chunks: tuple[GuardedChunk, ...]
    dropped: tuple[DroppedChunk, ...] = ()

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.chunks]

    def dropped_for(self, reason: DropReason) -> list[DroppedChunk]:
        return [d for d in self.dropped if d.reason is reason]

    def to_dict(self) -> dict[str, object]:
        return {"chunks": [c.to_dict() for c in self.chunks], "dropped": [d.to_dict() for d in self.dropped]}


class RetrievalGuard:
    """Enforces chunk ACLs for a requester, then scans and blocks, flags or sanitises what is left.

    `injection_action` overrides what the policy does with injection in retrieved content ("sanitize"
    is the policy action `redact` for the injection category); None follows the policy as given.
    """

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        *,
        injection_action: InjectionAction | None = None,
        marker: str = MARKER,
        guard: Guard | None = None,
    ) -> None:
        if guard is not None:
            if injection_action is not None:
                raise ValueError(
                    "pass either a guard or injection_action, not both (the guard's policy decides)"
                )
            self.guard = guard
        else:
            if policy is not None and not isinstance(policy, Policy):
                policy = Policy.from_file(policy)
            policy = policy or Policy()
            if injection_action is not None:
                policy = with_retrieval_injection_action(policy, injection_action)
            self.guard = Guard(policy)
        self.policy = self.guard.policy
        self.marker = marker

    def permitted(
        self, chunks: Sequence[Chunk], requester: Requester
    ) -> tuple[list[Chunk], list[DroppedChunk]]:
        """Split chunks into those the requester may read and reports of those it may not."""
        kept: list[Chunk] = []
        dropped: list[DroppedChunk] = []
        for chunk in chunks:
            try:
                allowed = ACL.parse(chunk.metadata.get("acl")).permits(requester)
            except AclError as exc:
                dropped.append(DroppedChunk(chunk.id, DropReason.ACL_INVALID, str(exc)))
                log.warning("retrieval: chunk %s dropped, invalid acl: %s", chunk.id, exc)
                continue
            if allowed:
                kept.append(chunk)
            else:
                dropped.append(
                    DroppedChunk(chunk.id, DropReason.ACL_DENIED, f"not readable by {requester.describe()}")
                )
                log.info("retrieval: chunk %s dropped, not readable by %s", chunk.id, requester.describe())
        return kept, dropped

    def filter(
        self, chunks: Sequence[Chunk], requester: Requester, *, vault: Vault | None = None
    ) -> RetrievalResult:
        """ACLs, then scanning; the kept chunks stay in their given (rank) order."""
        permitted, dropped = self.permitted(chunks, requester)
        if not permitted:
            return RetrievalResult((), tuple(dropped))
        verdicts = self.guard.scan_batch([Message(c.text, Source.RETRIEVAL) for c in permitted], vault=vault)
        kept: list[GuardedChunk] = []
        for chunk, verdict in zip(permitted, verdicts, strict=True):
            if verdict.action is Action.BLOCK:
                why = ", ".join(verdict.categories) or "policy"
                dropped.append(
                    DroppedChunk(chunk.id, DropReason.BLOCKED, f"blocked: {why}", verdict.findings)
                )
                log.info("retrieval: chunk %s blocked (%s)", chunk.id, why)
                continue
            text = chunk.text
            if verdict.action is Action.REDACT:
                text = self.sanitize(chunk.text, verdict, vault=vault)
            kept.append(GuardedChunk(chunk, text, verdict.action, verdict.findings))
        return RetrievalResult(tuple(kept), tuple(dropped))

    def sanitize(self, text: str, verdict: Verdict, *, vault: Vault | None = None) -> str:
        """Remove injected passages and rewrite PII/secrets as the verdict's categories require."""
        if "injection" not in verdict.categories:
            return verdict.redacted_text if verdict.redacted_text is not None else text
        threshold = self.policy.category_rule("injection", Source.RETRIEVAL).flag_at
        removals: list[tuple[int, int, str]] = []
        suspect: list[tuple[int, int]] = []
        for finding in verdict.findings:
            if finding.category != "injection" or finding.span is None or finding.score < threshold:
                continue
            if finding.detector in _EXACT_DETECTORS:
                removals.append((finding.span.start, finding.span.end, ""))
            else:
                suspect.append((finding.span.start, finding.span.end))
        removals.extend((start, end, self.marker) for start, end in self._injected_sentences(text, suspect))
        edits = _merge(removals)
        others = [c for c in verdict.categories if c != "injection"]
        if others:
            wanted = set(others)
            strategies = {c: self.policy.category_rule(c, Source.RETRIEVAL).redaction for c in wanted}
            removed = list(edits)
            chosen = [
                f
                for f in verdict.findings
                if f.category in wanted
                and f.span is not None
                and not any(f.span.start < end and start < f.span.end for start, end, _ in removed)
            ]
            for replacement in redact(text, chosen, strategies, vault=vault).replacements:
                edits.append((replacement.span.start, replacement.span.end, replacement.replacement))
        return _apply(text, sorted(edits))

    def _injected_sentences(self, text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The sentences to remove: of those the findings touch, the ones that are injection on their own
        (a classifier window often spans a benign sentence too), or all of them if none is alone."""
        if not spans:
            return []
        touched = [s for s in sentences(text) if any(s[0] < end and start < s[1] for start, end in spans)]
        threshold = self.policy.category_rule("injection", Source.RETRIEVAL).flag_at
        verdicts = self.guard.scan_batch([Message(text[a:b], Source.RETRIEVAL) for a, b in touched])
        alone = [
            sentence
            for sentence, verdict in zip(touched, verdicts, strict=True)
            if any(
                f.category == "injection" and f.detector not in _EXACT_DETECTORS and f.score >= threshold
                for f in verdict.findings
            )
        ]
        return alone or touched


def sentences(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence (ends at . ! ? before a space, or a line break), spaces trimmed."""
    out: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _add_sentence(text, start, match.end(), out)
        start = match.end()
    _add_sentence(text, start, len(text), out)
    return out


def _add_sentence(text: str, start: int, end: int, out: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def with_retrieval_injection_action(policy: Policy, action: InjectionAction) -> Policy:
    """The policy with injection in retrieved content handled by `action` (sanitize = redact)."""
    if action not in _ACTION_OF:
        raise ValueError(f"injection_action must be one of {', '.join(_ACTION_OF)}, not {action!r}")
    data = policy.model_dump(mode="python")
    sources = data.setdefault("sources", {})
    retrieval = sources.setdefault(Source.RETRIEVAL, {})
    categories = retrieval.setdefault("categories", {})
    categories.setdefault("injection", {})["action"] = _ACTION_OF[action]
    return Policy.model_validate(data)


def _merge(removals: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, marker in sorted(removals):
        if merged and start <= merged[-1][1]:
            last_start, last_end, last_marker = merged[-1]
            merged[-1] = (last_start, max(last_end, end), last_marker or marker)
        else:
            merged.append((start, end, marker))
    return merged


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    parts: list[str] = []
    done = 0
    for start, end, replacement in edits:
        if start < done:
            continue
        parts.append(text[done:start])
        parts.append(replacement)
        done = end
    parts.append(text[done:])
    return "".join(parts)
