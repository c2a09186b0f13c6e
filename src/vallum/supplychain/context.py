"""What a format reader needs while it reads one file: where it is, what it found, and what it may spend."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from vallum.core.types import Severity
from vallum.supplychain.allowlist import AllowList
from vallum.supplychain.catalogue import ModelScanCatalogue
from vallum.supplychain.errors import ScanAbort
from vallum.supplychain.policy import Limits, ModelScanPolicy
from vallum.supplychain.report import ModelFinding


@dataclass
class ScanState:
    """Shared by every reader working on one top-level file."""

    policy: ModelScanPolicy
    catalogue: ModelScanCatalogue
    allow_list: AllowList
    deadline: float
    folder: Path | None  # the file's folder on disk, for ONNX external data and sibling files
    path: Path | None = None  # the file itself, for readers that need a path (h5py)
    detected: str = "unknown"  # the top-level format as detected, reported even when reading it fails
    findings: list[ModelFinding] = field(default_factory=list)
    details: dict[str, str] = field(default_factory=dict)
    resources: ExitStack = field(default_factory=ExitStack)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass(frozen=True)
class ScanContext:
    state: ScanState
    where: tuple[str, ...] = ()
    depth: int = 0
    allow_override: AllowList | None = None  # a stricter or wider list for one part (TorchScript pickles)

    @property
    def allow_list(self) -> AllowList:
        return self.allow_override or self.state.allow_list

    def with_allow_list(self, allow_list: AllowList) -> ScanContext:
        return replace(self, allow_override=allow_list)

    @property
    def limits(self) -> Limits:
        return self.state.policy.limits

    def location(self, extra: str = "") -> str:
        parts = [*self.where, extra] if extra else list(self.where)
        return " > ".join(parts)

    def add(self, rule: str, message: str, where: str = "", severity: Severity | None = None) -> None:
        """Record a finding of `rule` (its catalogue severity unless given) at `where` inside this context."""
        if rule in self.state.policy.ignore_rules:
            return
        location = self.location(where)
        key = (rule, message, location)
        if key in self.state._seen:
            return
        self.state._seen.add(key)
        level = severity if severity is not None else self.state.catalogue.rule(rule).severity_level
        self.state.findings.append(ModelFinding(rule, level, message, location))

    def child(self, part: str) -> ScanContext:
        """A context one level deeper (an archive member, a nested pickle); too deep aborts the scan."""
        if self.depth + 1 > self.limits.max_depth:
            raise ScanAbort(
                f"nested more than {self.limits.max_depth} levels deep; over the scan limit (limits.max_depth)",
                self.location(part),
            )
        return replace(self, where=(*self.where, part), depth=self.depth + 1)

    def at(self, part: str) -> ScanContext:
        """The same depth, a more precise location (a metadata key, a template)."""
        return replace(self, where=(*self.where, part))

    def check_time(self) -> None:
        if time.monotonic() > self.state.deadline:
            raise ScanAbort(
                f"scanning took longer than {self.limits.max_seconds:g} s; over the scan limit (limits.max_seconds)",
                self.location(),
            )

    def detail(self, key: str, value: str) -> None:
        self.state.details.setdefault(key, value)
