"""Stored prompt and output text encrypted at rest with AES-256-GCM, under keys taken from the environment.

VALLUM_EVENT_KEYS="id1:<base64 of 32 bytes>,id2:<...>": the first key encrypts new rows, every key can
decrypt (so keys rotate by putting the new one first, running `vallum events rotate`, then dropping the
old one). Each row gets a fresh 96-bit random nonce, and the event id is the associated data, so a
ciphertext copied onto another event's row fails to decrypt instead of showing up under the wrong event.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vallum.errors import EventStoreError

ENV_VAR = "VALLUM_EVENT_KEYS"
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    blob: str  # base64(nonce + ciphertext with its tag)


class EventKeys:
    """The encryption keys by id; the first one given is current."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise EventStoreError(f"no event encryption key given; set {ENV_VAR}=id:<base64 of 32 bytes>")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not key_id or any(c in key_id for c in ":, "):
                raise EventStoreError(
                    f"{ENV_VAR}: key id {key_id!r} must be non-empty, without ':', ',' or spaces"
                )
            if len(key) != 32:
                raise EventStoreError(
                    f"{ENV_VAR}: key {key_id!r} is {len(key)} bytes; AES-256 needs exactly 32"
                )
            if key_id in self._ciphers:
                raise EventStoreError(f"{ENV_VAR}: key id {key_id!r} is given twice")
            self._ciphers[key_id] = AESGCM(key)
        self.current = keys[0][0]

    @classmethod
    def parse(cls, spec: str) -> EventKeys:
        """Keys from "id1:<base64>,id2:<base64>" (the format of VALLUM_EVENT_KEYS)."""
        keys: list[tuple[str, bytes]] = []
        for item in spec.split(","):
            key_id, sep, encoded = item.strip().partition(":")
            if not sep:
                raise EventStoreError(f"{ENV_VAR}: expected id:<base64 key>, got an entry without ':'")
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error as exc:
                raise EventStoreError(f"{ENV_VAR}: key {key_id!r} is not valid base64 ({exc})") from exc
            keys.append((key_id.strip(), key))
        return cls(keys)

    @classmethod
    def from_env(cls, *, required: bool) -> EventKeys | None:
        """Keys from VALLUM_EVENT_KEYS; None when it is unset and not `required`; invalid is always an error."""
        spec = os.environ.get(ENV_VAR, "").strip()
        if not spec:
            if required:
                raise EventStoreError(
                    f"event text is to be stored encrypted but {ENV_VAR} is not set; generate a key with "
                    '`python -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"` and '
                    f"set {ENV_VAR}=k1:<that key>"
                )
            return None
        return cls.parse(spec)

    def encrypt(self, plaintext: bytes, event_id: str) -> Sealed:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, plaintext, event_id.encode("utf-8"))
        return Sealed(self.current, base64.b64encode(nonce + sealed).decode("ascii"))

    def decrypt(self, sealed: Sealed, event_id: str) -> bytes:
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise EventStoreError(
                f"event {event_id}: its text is encrypted under key {sealed.key_id!r}, which is not in "
                f"{ENV_VAR} (known: {', '.join(self._ciphers)})"
            )
        try:
            raw = base64.b64decode(sealed.blob, validate=True)
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], event_id.encode("utf-8"))
        except (binascii.Error, InvalidTag, ValueError) as exc:
            raise EventStoreError(
                f"event {event_id}: stored text fails authentication under key {sealed.key_id!r}; the row was "
                "altered or its ciphertext belongs to another event"
            ) from exc
