"""The red team's errors: each says what was wrong and how to fix it."""

from __future__ import annotations

from vallum.errors import VallumError


class RedTeamError(VallumError):
    """Base class of the red team's deliberate errors."""


class CatalogueError(RedTeamError):
    """An attack suite file is invalid or a requested suite, attack or mutator does not exist."""


class TargetError(RedTeamError):
    """The target endpoint could not answer: it errored, hung or rate-limited past every retry."""

    def __init__(self, message: str, *, status: int | None = None, tries: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.tries = tries


class StateError(RedTeamError):
    """The resume state in the report directory belongs to another campaign or cannot be read."""


class GarakImportError(RedTeamError):
    """A garak report could not be read."""
