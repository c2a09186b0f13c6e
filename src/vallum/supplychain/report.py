"""What a model scan produces: findings, one report per file, and the verdict that follows from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vallum.core.types import Severity


class FileVerdict(StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"
    UNSUPPORTED = "unsupported"  # no reader for this format: not judged, so not known to be safe
    ERROR = "error"  # malformed, truncated or over a limit: not judged, so not known to be safe


@dataclass(frozen=True, slots=True)
class ModelFinding:
    """One thing found in a file: a rule id from rules/model_scan.yaml, how bad it is, and where.

    `location` is human-readable and nests with " > ": "archive/data.pkl > offset 57 (STACK_GLOBAL)".
    """

    rule: str
    severity: Severity
    message: str
    location: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "severity": self.severity.name.lower(),
            "message": self.message,
            "location": self.location,
        }


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    format: str
    verdict: FileVerdict
    findings: tuple[ModelFinding, ...] = ()
    size: int = 0
    seconds: float = 0.0
    details: dict[str, str] = field(default_factory=dict)  # e.g. the architecture named in config.json

    @property
    def safe(self) -> bool:
        return self.verdict is FileVerdict.SAFE

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict.value,
            "findings": [f.to_dict() for f in self.findings],
        }
