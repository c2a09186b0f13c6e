"""Walking a chain and naming the first entry that is wrong: altered, removed, reordered or unsigned.

Checks run in this order for each entry, and the first failure ends the walk:
  malformed     not a JSON object with the entry fields and their types
  altered       its hash does not match its content (someone edited it by hand)
  removed       its seq skips numbers that appear nowhere later (entries were deleted)
  reordered     its seq skips numbers that appear later (entries were moved)
  duplicate     its seq was already seen (an entry was copied or replayed)
  broken_link   its prev is not the hash of the entry before (an entry was replaced and re-hashed)
  unsigned / bad_signature   only when a public key is given
  anchor_mismatch / truncated   only when an anchor (a head recorded earlier) is given
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vallum.audit.backend import StoredEntry
from vallum.audit.entry import FIELDS, GENESIS, Link, chain_hash
from vallum.audit.signing import signature_valid

ProblemKind = Literal[
    "malformed",
    "altered",
    "removed",
    "reordered",
    "duplicate",
    "broken_link",
    "unsigned",
    "bad_signature",
    "anchor_mismatch",
    "truncated",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TYPES: dict[str, tuple[type, ...]] = {
    "actor": (str,),
    "action": (str,),
    "target": (str,),
    "detail": (dict,),
    "prev": (str,),
    "hash": (str,),
}


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    where: str  # "line 7", "row 7", or "end of log"
    seq: int | None  # the seq the entry claims, where it has one
    message: str


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int  # entries found intact before the first problem (all of them when there is none)
    head: Link | None  # the last intact entry: keep it elsewhere and pass it back as an anchor later
    signed: int  # intact entries that carry a signature
    signatures_checked: bool
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for an API: the head as "SEQ:HASH", the problem as a mapping or None."""
        problem = self.problem
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": str(self.head) if self.head else None,
            "signed": self.signed,
            "signatures_checked": self.signatures_checked,
            "problem": None
            if problem is None
            else {
                "kind": problem.kind,
                "where": problem.where,
                "seq": problem.seq,
                "message": problem.message,
            },
        }


def verify_chain(
    stored: Iterable[StoredEntry], *, public_key: Ed25519PublicKey | None = None, anchor: Link | None = None
) -> Verification:
    """Check a chain from its first entry; `anchor` is a head recorded earlier that must still be in it."""
    rest = iter(stored)
    previous = GENESIS
    count = signed = 0
    anchored = False

    def result(problem: Problem | None) -> Verification:
        head = previous if count else None
        return Verification(count, head, signed, public_key is not None, problem)

    for item in rest:
        fields = item.fields
        problem = _shape_problem(item)
        if problem is None:
            assert fields is not None
            problem = _entry_problem(item, fields, previous, rest, public_key, anchor)
        if problem is not None:
            return result(problem)
        assert fields is not None
        anchored = anchored or (anchor is not None and fields["seq"] == anchor.seq)
        previous = Link(fields["seq"], fields["hash"])
        count += 1
        signed += "sig" in fields
    if anchor is not None and not anchored:
        ends = f"ends at seq {previous.seq}" if count else "is empty"
        return result(
            Problem(
                "truncated",
                "end of log",
                None,
                f"the anchor names seq {anchor.seq}, but the log {ends}: entries were cut from its end",
            )
        )
    return result(None)


def _shape_problem(item: StoredEntry) -> Problem | None:
    fields = item.fields
    if fields is None:
        return Problem("malformed", item.where, None, f"{item.where} is not a JSON object")
    seq = fields.get("seq")
    claimed = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        return Problem("malformed", item.where, claimed, f"the entry has no {', '.join(missing)}")
    if claimed is None or claimed < 1:
        return Problem("malformed", item.where, None, f"seq must be a positive integer, not {seq!r}")
    time = fields["time"]
    if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
        return Problem("malformed", item.where, claimed, f"time must be a number, not {time!r}")
    for name, types in _TYPES.items():
        if not isinstance(fields[name], types):
            return Problem("malformed", item.where, claimed, f"{name} must be {types[0].__name__}")
    for name in ("prev", "hash"):
        if not _HEX64.fullmatch(fields[name]):
            return Problem("malformed", item.where, claimed, f"{name} must be 64 lowercase hex digits")
    if "sig" in fields and not isinstance(fields["sig"], str):
        return Problem("malformed", item.where, claimed, "sig must be a base64 string")
    return None


def _entry_problem(
    item: StoredEntry,
    fields: dict[str, Any],
    previous: Link,
    rest: Iterator[StoredEntry],
    public_key: Ed25519PublicKey | None,
    anchor: Link | None,
) -> Problem | None:
    seq: int = fields["seq"]
    computed = chain_hash(fields)
    if computed != fields["hash"]:
        return Problem(
            "altered",
            item.where,
            seq,
            f"entry seq {seq} was altered: its content hashes to {computed[:16]}…, "
            f"not to its recorded hash {fields['hash'][:16]}…",
        )
    expected = previous.seq + 1
    if seq < expected:
        return Problem(
            "duplicate",
            item.where,
            seq,
            f"entry seq {seq} appears again after seq {previous.seq} (copied or replayed)",
        )
    if seq > expected:
        return _gap_problem(item, seq, expected, rest)
    if fields["prev"] != previous.hash:
        if previous.seq == 0:
            why = "it should start the chain (prev of 64 zeros): entries before it were cut and the rest renumbered"
        else:
            why = (
                f"seq {previous.seq} hashes to {previous.hash[:16]}…: seq {previous.seq} was replaced or "
                "re-hashed, or entries between them were removed and the rest renumbered"
            )
        return Problem(
            "broken_link", item.where, seq, f"entry seq {seq} has prev {fields['prev'][:16]}…, but {why}"
        )
    if public_key is not None:
        signature = fields.get("sig")
        if signature is None:
            return Problem("unsigned", item.where, seq, f"entry seq {seq} carries no signature")
        if not signature_valid(public_key, fields["hash"], signature):
            return Problem(
                "bad_signature",
                item.where,
                seq,
                f"entry seq {seq} has a signature that this public key rejects",
            )
    if anchor is not None and seq == anchor.seq and fields["hash"] != anchor.hash:
        return Problem(
            "anchor_mismatch",
            item.where,
            seq,
            f"entry seq {seq} hashes to {fields['hash'][:16]}…, not to the anchored {anchor.hash[:16]}…: "
            "the log up to here was rewritten after the anchor was taken",
        )
    return None


def _gap_problem(item: StoredEntry, seq: int, expected: int, rest: Iterator[StoredEntry]) -> Problem:
    """Seqs expected..seq-1 are missing here: moved further down (reordered) or gone (removed)."""
    moved: tuple[int, str] | None = None  # the first of the missing seqs found later, and where
    for later in rest:
        found = (later.fields or {}).get("seq")
        if isinstance(found, int) and expected <= found < seq and (moved is None or found < moved[0]):
            moved = (found, later.where)
            if found == expected:
                break
    if moved is not None:
        return Problem(
            "reordered",
            item.where,
            seq,
            f"entry seq {seq} stands where seq {expected} belongs; seq {moved[0]} comes later, at {moved[1]}",
        )
    gone = f"seq {expected}" if seq == expected + 1 else f"seqs {expected} to {seq - 1}"
    return Problem("removed", item.where, seq, f"{gone} missing before entry seq {seq}: removed from the log")
