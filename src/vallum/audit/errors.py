"""What the audit log raises: its own branch of the VallumError hierarchy."""

from vallum.errors import VallumError


class AuditError(VallumError):
    """The audit log could not be opened, read or appended to; the message says which log and why."""


class AuditKeyError(AuditError):
    """A signing or verification key is missing or is not a base64-encoded raw 32-byte Ed25519 key."""
