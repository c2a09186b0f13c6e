"""One exception hierarchy for everything vallum raises on purpose."""


class VallumError(Exception):
    """Base class: every error vallum raises deliberately derives from this."""


class PolicyError(VallumError):
    """A policy file or mapping is invalid; the message names the key and, for files, the line."""


class DetectorError(VallumError):
    """A detector failed or could not be loaded."""


class InputError(VallumError):
    """Input to scan could not be read (bad encoding, malformed JSON line, ...)."""


class EventStoreError(VallumError):
    """The event store is misconfigured (URL, text mode, encryption keys) or a stored row cannot be read."""
