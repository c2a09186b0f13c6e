"""Browser sessions: a signed cookie naming the admin token's id and role, and a CSRF token derived from it.

The cookie holds `v1.<token id>.<role>.<expiry>.<nonce>.<HMAC-SHA256 of the rest>` under a secret that is
random per process unless one is given, so a restart ends every session. The admin token itself is never
in the cookie. A logout remembers the session's nonce until its expiry, so a copied cookie dies with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vallum.admin.auth import GRANTS

COOKIE = "vallum_dashboard"
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str  # the admin token's id, as the audit log records who acted
    role: str
    expires: float
    nonce: str


class Sessions:
    def __init__(self, secret: bytes, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 bytes")
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock
        self._ended: dict[str, float] = {}  # nonce -> expiry, for sessions logged out before they expire
        self._lock = threading.Lock()

    def issue(self, token_id: str, role: str) -> tuple[str, Session]:
        """A new session for this token holder, and the cookie value that carries it."""
        session = Session(token_id, role, round(self._clock() + self.ttl_s), secrets.token_urlsafe(16))
        body = ".".join((_VERSION, _b64(token_id.encode()), role, str(int(session.expires)), session.nonce))
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged, expired or logged out."""
        if not cookie:
            return None
        parts = cookie.split(".")
        if len(parts) != 6 or parts[0] != _VERSION:
            return None
        body, signature = ".".join(parts[:5]), parts[5]
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        _, encoded_id, role, expires, nonce = parts[:5]
        try:
            token_id, expiry = _unb64(encoded_id).decode(), float(expires)
        except (ValueError, UnicodeDecodeError):
            return None
        if role not in GRANTS or expiry <= self._clock():
            return None
        with self._lock:
            if nonce in self._ended:
                return None
        return Session(token_id, role, expiry, nonce)

    def end(self, session: Session) -> None:
        now = self._clock()
        with self._lock:
            self._ended = {n: e for n, e in self._ended.items() if e > now}
            self._ended[session.nonce] = session.expires

    def csrf_token(self, session: Session) -> str:
        """The value a form of this session must send back; forms of other sessions cannot know it."""
        return self._sign(f"csrf.{session.nonce}")

    def csrf_valid(self, session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf_token(session))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
