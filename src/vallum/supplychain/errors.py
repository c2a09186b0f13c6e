"""What model scanning raises: every error derives from VallumError, as elsewhere in vallum."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vallum.errors import VallumError

if TYPE_CHECKING:
    from vallum.supplychain.report import FileReport


class SupplyChainError(VallumError):
    """Model scanning could not do what was asked (a path that does not exist, a bad policy file, ...)."""


class ScanAbort(SupplyChainError):
    """A file is malformed, or over a limit that keeps scanning bounded: the file's verdict is `error`.

    Raised inside format readers; the scanner turns it into a finding and never lets it escape.
    `location` says where inside the file (an archive member, a byte offset), when known.
    """

    def __init__(self, reason: str, location: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


class ModelRejectedError(SupplyChainError):
    """`safe_load` / `verify` refused a file: it is unsafe, could not be judged, or is of no known format.

    `reports` holds the scan reports that led to the refusal, findings included.
    """

    def __init__(self, message: str, reports: tuple[FileReport, ...]) -> None:
        super().__init__(message)
        self.reports = reports


class FormatUnsupported(SupplyChainError):
    """The file's format is known but this installation cannot read it (a missing optional package)."""
