"""The reversible vault: one request's replacement -> original mapping, so the model's answer can be restored.

A `Vault` belongs to one request (a random request id) and, through a `VaultStore`, to one identity;
nothing in it is shared with another request, so a placeholder from request A restores nothing in B.
Values never appear in `repr`/`str` (vaults end up in logs and tracebacks), and the whole mapping is
dropped once its time to live has passed (the clock is injectable for tests).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from vallum.core.types import Identity
from vallum.errors import VallumError

DEFAULT_TTL_SECONDS = 900.0
Clock = Callable[[], float]


class VaultError(VallumError):
    """A vault is expired, unknown, or asked for by an identity it does not belong to."""


class Vault:
    """Replacements made while redacting one request, and their originals."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Clock = time.monotonic,
        request_id: str | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.request_id = request_id or secrets.token_urlsafe(12)
        self.identity = identity
        self._clock = clock
        self._expires_at = clock() + ttl_seconds
        self._originals: dict[str, str] = {}
        self._by_value: dict[tuple[str, str], str] = {}
        self._counters: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None
        self._prefixes: frozenset[str] = frozenset()
        self.version = 0  # bumped on every new entry, so streaming restorers know to refresh

    def __repr__(self) -> str:
        return f"Vault(request_id={self.request_id[:4]}…, entries={len(self._originals)}, expired={self.expired})"

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self._originals)

    @property
    def expired(self) -> bool:
        return self._clock() >= self._expires_at

    def placeholder(self, label: str, value: str) -> str:
        """`<LABEL_n>`, numbered per distinct value of that label within this request."""
        self._check()
        key = (label, value)
        if key not in self._by_value:
            number = self._counters.get(label, 0) + 1
            self._counters[label] = number
            self.remember(f"<{label}_{number}>", value, label)
        return self._by_value[key]

    def successor(self) -> Vault:
        """A vault for redactions that must stay redacted (in the model's answer): it numbers on from this
        one, so its placeholders never collide with this vault's, which are the ones restored."""
        self._check()
        after = Vault(identity=self.identity, clock=self._clock, request_id=self.request_id + ".out")
        after._expires_at = self._expires_at
        after._counters = dict(self._counters)
        return after

    def remember(self, replacement: str, original: str, label: str = "") -> None:
        """Record a replacement chosen elsewhere (a synthetic value, a hash token) for later restoring."""
        self._check()
        self._originals[replacement] = original
        self._by_value.setdefault((label, original), replacement)
        self._pattern = None
        self.version += 1

    def restore(self, text: str) -> str:
        """`text` with every replacement this vault made turned back into its original."""
        self._check()
        pattern = self.pattern()
        if pattern is None:
            return text
        return pattern.sub(lambda m: self._originals[m.group()], text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)

    def pattern(self) -> re.Pattern[str] | None:
        """One alternation of the escaped replacements, longest first (literals only: linear matching)."""
        if self._pattern is None and self._originals:
            keys = sorted(self._originals, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(k) for k in keys))
            self._prefixes = frozenset(k[:i] for k in keys for i in range(1, len(k)))
        return self._pattern

    def original(self, replacement: str) -> str:
        self._check()
        return self._originals[replacement]

    def lookup(self, replacement: str) -> str | None:
        self._check()
        return self._originals.get(replacement)

    def is_partial(self, tail: str) -> bool:
        """Whether `tail` is the beginning of some replacement (so it must wait for the next chunk)."""
        self.pattern()
        return tail in self._prefixes

    @property
    def longest(self) -> int:
        return max(map(len, self._originals), default=0)

    def clear(self) -> None:
        self._originals.clear()
        self._by_value.clear()
        self._pattern = None
        self._prefixes = frozenset()

    def _check(self) -> None:
        if self.expired:
            self.clear()
            raise VaultError(f"vault for request {self.request_id[:4]}… has expired; its values are gone")


class StreamRestorer:
    """Restores a streamed answer chunk by chunk; a replacement split across chunks is held back until whole.

    The hold-back is at most the longest replacement minus one character, and only when the end of the
    text seen so far could be the start of a replacement.
    """

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._pending = ""

    def feed(self, chunk: str) -> str:
        buffer = self._pending + chunk
        pattern = self._vault.pattern()
        if pattern is None:
            self._pending = ""
            return buffer
        pieces: list[str] = []
        cursor = 0
        for match in pattern.finditer(buffer):
            pieces.append(buffer[cursor : match.start()])
            pieces.append(self._vault.original(match.group()))
            cursor = match.end()
        tail = buffer[cursor:]
        hold = 0
        for size in range(min(len(tail), self._vault.longest - 1), 0, -1):
            if self._vault.is_partial(tail[-size:]):
                hold = size
                break
        pieces.append(tail[: len(tail) - hold])
        self._pending = tail[len(tail) - hold :]
        return "".join(pieces)

    def flush(self) -> str:
        """End of stream: whatever was held back goes out as it is (it was not a replacement after all)."""
        rest, self._pending = self._pending, ""
        return rest


@dataclass(slots=True)
class _Entry:
    vault: Vault
    identity: Identity | None


class VaultStore:
    """Every live request's vault, keyed by its random request id and bound to the identity that opened it."""

    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS, clock: Clock = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"VaultStore(vaults={len(self._entries)})"

    def open(self, identity: Identity | None = None) -> Vault:
        self.purge()
        vault = Vault(self.ttl_seconds, self._clock, identity=identity)
        self._entries[vault.request_id] = _Entry(vault, identity)
        return vault

    def get(self, request_id: str, identity: Identity | None = None) -> Vault:
        entry = self._entries.get(request_id)
        # One message for unknown, expired and foreign vaults: the caller learns nothing about other requests.
        if entry is None or entry.identity != identity or entry.vault.expired:
            if entry is not None and entry.vault.expired:
                self.close(request_id)
            raise VaultError("no live vault for this request and identity")
        return entry.vault

    def close(self, request_id: str) -> None:
        entry = self._entries.pop(request_id, None)
        if entry is not None:
            entry.vault.clear()

    def purge(self) -> int:
        """Drop expired vaults; returns how many went."""
        expired = [rid for rid, e in self._entries.items() if e.vault.expired]
        for rid in expired:
            self.close(rid)
        return len(expired)
