"""Ed25519 signatures over entry hashes; keys travel as base64 of their raw 32 bytes.

The gateway signs with the private key from VALLUM_AUDIT_SIGNING_KEY; anyone holding only the public key
(VALLUM_AUDIT_VERIFY_KEY, or `--public-key`) can check the log, and cannot forge entries.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from vallum.audit.errors import AuditKeyError

SIGNING_KEY_ENV = "VALLUM_AUDIT_SIGNING_KEY"
VERIFY_KEY_ENV = "VALLUM_AUDIT_VERIFY_KEY"


def _raw_key(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuditKeyError(f"the {what} is not valid base64: {exc}") from exc
    if len(raw) != 32:
        raise AuditKeyError(
            f"the {what} must be base64 of a raw 32-byte Ed25519 key, got {len(raw)} bytes "
            "(`vallum audit keygen` makes a pair)"
        )
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class Signer:
    """Signs entry hashes with one Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_base64(cls, text: str) -> Signer:
        return cls(Ed25519PrivateKey.from_private_bytes(_raw_key(text, "audit signing key")))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Signer | None:
        """The signer VALLUM_AUDIT_SIGNING_KEY names, or None when it is unset (entries go unsigned)."""
        text = environ.get(SIGNING_KEY_ENV)
        if not text:
            return None
        try:
            return cls.from_base64(text)
        except AuditKeyError as exc:
            raise AuditKeyError(f"{SIGNING_KEY_ENV}: {exc}") from exc

    @property
    def public_key(self) -> str:
        return _b64(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, entry_hash: str) -> str:
        """Base64 signature of the entry hash's 32 raw bytes."""
        return _b64(self._key.sign(bytes.fromhex(entry_hash)))


def load_verify_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw_key(text, "audit public key"))


def signature_valid(key: Ed25519PublicKey, entry_hash: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), bytes.fromhex(entry_hash))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def generate_key_pair() -> tuple[str, str]:
    """A fresh (private, public) pair, both base64 of the raw 32 bytes."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return _b64(private), _b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
