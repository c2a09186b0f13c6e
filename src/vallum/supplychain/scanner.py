"""Scanning files and folders: one report per file, with the verdict its findings lead to."""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from vallum.core.types import Severity
from vallum.supplychain.allowlist import AllowList
from vallum.supplychain.catalogue import bundled_allow_list, bundled_catalogue
from vallum.supplychain.context import ScanContext, ScanState
from vallum.supplychain.dispatch import scan_buffer
from vallum.supplychain.errors import FormatUnsupported, ScanAbort, SupplyChainError
from vallum.supplychain.policy import ModelScanPolicy
from vallum.supplychain.report import FileReport, FileVerdict, ModelFinding

_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


class ModelScanner:
    """Scans model files against one policy; reuse it for many files."""

    def __init__(self, policy: ModelScanPolicy | None = None) -> None:
        self.policy = policy or ModelScanPolicy()
        self.catalogue = bundled_catalogue()
        self.allow_list = AllowList(bundled_allow_list(), self.policy.allow_globals)

    def scan(self, paths: Iterable[str | Path]) -> list[FileReport]:
        """Reports for every file under `paths` (files, or folders walked recursively)."""
        return list(self.iter_scan(paths))

    def iter_scan(self, paths: Iterable[str | Path]) -> Iterator[FileReport]:
        for path in self.files(paths):
            yield self.scan_file(path)

    def files(self, paths: Iterable[str | Path]) -> Iterator[Path]:
        """The files a scan of `paths` reads, in the order it reads them (limits.max_files applies)."""
        count = 0
        for raw in paths:
            path = Path(raw)
            if not path.exists():
                raise SupplyChainError(f"{path}: no such file or folder")
            found = _walk(path) if path.is_dir() else iter([path])
            for file in found:
                count += 1
                if count > self.policy.limits.max_files:
                    raise SupplyChainError(
                        f"more than {self.policy.limits.max_files} files to scan (limits.max_files); "
                        "scan fewer paths or raise the limit in a policy"
                    )
                yield file

    def scan_file(self, path: str | Path) -> FileReport:
        path = Path(path)
        started = time.monotonic()
        state = ScanState(
            policy=self.policy,
            catalogue=self.catalogue,
            allow_list=self.allow_list,
            deadline=started + self.policy.limits.max_seconds,
            folder=path.parent,
            path=path,
        )
        ctx = ScanContext(state)
        fmt, size = "unknown", 0
        aborted: ScanAbort | None = None
        unsupported: str | None = None
        try:
            with state.resources:
                info = path.stat()
                size = info.st_size
                if not stat.S_ISREG(info.st_mode):
                    raise ScanAbort("not a regular file")
                buf = _map(path, size, state)
                fmt = scan_buffer(buf, ctx, path.name)
                del buf
        except ScanAbort as exc:
            aborted = exc
        except FormatUnsupported as exc:
            unsupported = str(exc)
        except OSError as exc:
            aborted = ScanAbort(f"cannot read the file: {exc.strerror or exc}")
        except (RecursionError, MemoryError) as exc:
            aborted = ScanAbort(f"the file is too deeply nested or too large to scan ({type(exc).__name__})")
        except Exception as exc:  # a reader's own bug must not pass a file it did not finish: fail closed
            aborted = ScanAbort(f"the scanner failed on this file ({type(exc).__name__}: {exc}); not judged")
        findings = list(state.findings)
        if aborted is not None:
            findings.append(ModelFinding("VAL-MDL-0001", Severity.ERROR, aborted.reason, aborted.location))
            fmt = fmt if fmt != "unknown" else state.detected
        if unsupported is not None:
            findings.append(ModelFinding("VAL-MDL-0002", Severity.NOTICE, unsupported))
        verdict = _verdict(state.findings, self.policy, aborted is not None, unsupported is not None)
        return FileReport(
            path=str(path),
            format=fmt,
            verdict=verdict,
            findings=tuple(findings),
            size=size,
            seconds=time.monotonic() - started,
            details=dict(state.details),
        )


def _verdict(
    found: list[ModelFinding], policy: ModelScanPolicy, aborted: bool, unsupported: bool
) -> FileVerdict:
    if any(f.severity >= policy.fail_severity for f in found):
        return FileVerdict.UNSAFE
    if aborted:
        return FileVerdict.ERROR
    if unsupported:
        return FileVerdict.UNSUPPORTED
    return FileVerdict.SAFE


def _map(path: Path, size: int, state: ScanState) -> memoryview:
    if size == 0:
        return memoryview(b"")
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def close() -> None:
        with contextlib.suppress(BufferError):  # a view is still referenced; the map closes when it goes
            mapped.close()

    state.resources.callback(close)
    return memoryview(mapped)


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, sorted, skipping version-control folders; links to files are followed (their
    content is what a loader reads), links to folders are not (no cycles)."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            yield Path(folder) / name
