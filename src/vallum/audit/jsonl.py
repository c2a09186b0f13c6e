"""The audit log as a JSON Lines file: one canonical entry a line, appended and fsynced.

Appends hold a thread lock and an exclusive `flock` on the file, and re-read the tail whenever the file
changed size since this process last wrote, so threads and processes sharing the file still form one
chain. A write that fails half-way (a full disk) is cut back off, so the file never ends mid-entry.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from vallum.audit.backend import Seal, StoredEntry
from vallum.audit.entry import GENESIS, AuditEntry, Draft, Link
from vallum.audit.errors import AuditError

_TAIL_BLOCK = 64 * 1024


class JsonlAuditFile:
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """`create=False` opens an existing log only to read it (verify, export), and never writes."""
        self.path = Path(path)
        self._fd: int | None = None
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            elif not self.path.is_file():
                raise AuditError(f"cannot read audit file {self.path}: no such file")
        except OSError as exc:
            raise AuditError(f"cannot open audit file {self.path}: {exc.strerror or exc}") from exc
        self._lock = threading.Lock()
        self._tail = GENESIS
        self._size = -1  # size of the file when `_tail` was last known to be its tail

    @property
    def name(self) -> str:
        return str(self.path)

    def append(self, drafts: Sequence[Draft], seal: Seal) -> list[AuditEntry]:
        with self._lock:
            fd = self._writable_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                tail = self._tail if size == self._size else self._read_tail(size)
                entries = []
                for draft in drafts:
                    entry = seal(draft, tail)
                    entries.append(entry)
                    tail = entry.link
                data = b"".join(entry.line() for entry in entries)
                self._write(fd, data, size)
                self._size, self._tail = size + len(data), tail
                return entries
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def read(self) -> Iterator[StoredEntry]:
        try:
            handle = self.path.open("rb")
        except OSError as exc:
            raise AuditError(f"cannot read audit file {self.path}: {exc.strerror or exc}") from exc
        with handle:
            for number, raw in enumerate(handle, start=1):
                text = raw.decode("utf-8", errors="replace").rstrip("\n")
                yield StoredEntry(f"line {number}", _object_or_none(text), text)

    def latest(self, limit: int) -> list[StoredEntry]:
        return list(deque(self.read(), maxlen=limit)) if limit > 0 else []

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _writable_fd(self) -> int:
        if self._fd is None:
            raise AuditError(f"audit file {self.path} is closed or was opened read-only")
        return self._fd

    def _write(self, fd: int, data: bytes, size: int) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, size)
            raise AuditError(f"cannot append to audit file {self.path}: {exc.strerror or exc}") from exc

    def _read_tail(self, size: int) -> Link:
        if size == 0:
            return GENESIS
        last = self._last_line(self._writable_fd(), size)
        if last is None:
            raise AuditError(
                f"audit file {self.path} ends in a partial entry; nothing more is appended until it is "
                "checked with `vallum audit verify` and repaired"
            )
        fields = _object_or_none(last.decode("utf-8", errors="replace"))
        seq, digest = (fields or {}).get("seq"), (fields or {}).get("hash")
        if not isinstance(seq, int) or not isinstance(digest, str):
            raise AuditError(
                f"the last entry of audit file {self.path} is unreadable; check it with `vallum audit verify`"
            )
        return Link(seq, digest)

    def _last_line(self, fd: int, size: int) -> bytes | None:
        """The file's last line without its newline, or None when the file does not end in one."""
        collected = b""
        position = size
        while position > 0:
            start = max(0, position - _TAIL_BLOCK)
            collected = os.pread(fd, position - start, start) + collected
            position = start
            if not collected.endswith(b"\n"):
                return None
            cut = collected.rfind(b"\n", 0, len(collected) - 1)
            if cut >= 0:
                return collected[cut + 1 : -1]
        return collected[:-1]


def _object_or_none(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
