"""The spool: an append-only journal of the events the store sink accepted, so a crash loses at most one batch.

`append` runs on the request path: it encodes the event as one JSON line (orjson: about 1 µs, a tenth of
the standard library's time) and keeps it in memory, handing the lines to the operating system (one write)
every `flush_every` events. A process that is killed loses only
the lines not yet handed over, so fewer than `flush_every` events; `sync` (called by the writer before each
database batch) hands the rest over and fsyncs, so a power cut loses at most what arrived since.

Lines go to segment files in one directory. A segment holds `segment_events` events and is deleted once every
one of them is committed (or given up on) by the writer. Each live segment is held under an exclusive
`flock`, which the kernel releases when its process dies however it dies: at start a sink claims the
unlocked segments (left by a process that died) and replays them into the store; the store ignores event
ids it already has, so replaying a segment that was partly committed writes only what is missing. Several
processes may share one directory: they never claim each other's live segments.

Prompt and output text is journaled only when the store keeps it in clear (text mode "redacted"): with "none"
it must never touch the disk, and with "encrypted" never in clear, so an event replayed in that mode has its
findings but not its text.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from vallum.errors import EventStoreError

log = logging.getLogger(__name__)

SUFFIX = ".events"
_CLAIMED_SUFFIX = ".replaying"


@dataclass(eq=False)
class Segment:
    path: Path
    fd: int
    appended: int = 0  # events whose line was appended (in memory or in the file)
    finished: int = 0  # of those, events the writer has committed or given up on
    sealed: bool = False  # no more lines go here: deleted once finished == appended
    unsynced: bool = True  # written to the OS since the last fsync


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        flush_every: int = 500,
        segment_events: int = 10_000,
        keep_text: bool = False,
    ) -> None:
        if flush_every < 1 or segment_events < 1:
            raise EventStoreError("spool: flush_every and segment_events must be at least 1")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EventStoreError(
                f"cannot create the event spool directory {directory}: {exc}; "
                "set events.spool to a writable directory, or to 'off'"
            ) from exc
        self.directory = directory
        self.flush_every = flush_every
        self.segment_events = segment_events
        self.keep_text = keep_text
        self._lock = threading.Lock()  # appends come from the request path, sync and finished from the writer
        self._pending: list[bytes] = []  # lines of the active segment not yet handed to the OS
        self._active: Segment | None = None
        self._open: list[Segment] = []
        self._named = False  # a segment was created since the last sync
        self.unprotected = 0  # events that could not be journaled (still written to the store)
        self.last_error: str | None = None
        self._last_logged = 0.0

    # ---- request path ------------------------------------------------------------------------------------

    def encode(self, event: dict[str, Any]) -> bytes | None:
        """One JSON line (outside any lock, so a slow encode holds nobody up); None if it cannot be encoded."""
        if not self.keep_text:
            event = _without_texts(event)
        try:
            return encode_line(event)
        except (TypeError, ValueError) as exc:  # a circular structure: the store will say more
            with self._lock:
                self._failed(1, exc)
            return None

    def append(self, line: bytes) -> Segment | None:
        """Journal one encoded event; returns its segment, to hand to `finished` once it is committed, or
        None when the spool cannot be written (disk full, directory gone): the event still goes to the store,
        only without protection from a crash, and the failure is logged and counted in `unprotected`."""
        with self._lock:
            segment = self._active
            try:
                if segment is None or segment.appended >= self.segment_events:
                    segment = self._rotate()
            except OSError as exc:
                self._failed(1, exc)
                return None
            self._pending.append(line)
            segment.appended += 1
            if len(self._pending) >= self.flush_every:
                self._write_pending()
            return segment

    # ---- writer side -------------------------------------------------------------------------------------

    def sync(self) -> None:
        """Hand every appended line to the OS and fsync it (before the writer commits a batch)."""
        with self._lock:
            self._write_pending()
            unsynced = [s for s in self._open if s.unsynced]
            for segment in unsynced:
                segment.unsynced = False
            named, self._named = self._named, False
        for segment in unsynced:  # outside the lock: appends go on while the disk works
            try:
                os.fsync(segment.fd)
            except OSError as exc:  # a segment finished and closed meanwhile has nothing left to protect
                log.debug("spool: fsync of %s: %s", segment.path, exc)
        if named:
            _fsync_directory(self.directory)

    def finished(self, counts: dict[Segment, int]) -> None:
        """These many events of each segment are committed or given up on; drop segments that are done."""
        with self._lock:
            for segment, n in counts.items():
                segment.finished += n
                if segment.sealed and segment.finished >= segment.appended:
                    self._discard(segment)

    def close(self) -> None:
        """Delete the segments whose events are all finished; keep (and unlock) the rest for a replay."""
        with self._lock:
            self._write_pending()
            for segment in list(self._open):
                if segment.finished >= segment.appended:
                    self._discard(segment)
                else:
                    os.close(segment.fd)
                    self._open.remove(segment)
            self._active = None

    # ---- replay at start ---------------------------------------------------------------------------------

    def orphans(self) -> Iterator[Path]:
        """Segments no live process holds, one at a time, each held (and renamed, so that no other starting
        process looks for it) while the caller replays it; the caller deletes it once it is in the store."""
        for path in sorted([*self.directory.glob("*" + SUFFIX), *self.directory.glob("*" + _CLAIMED_SUFFIX)]):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # another process claimed it first
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                claimed = path.with_suffix(_CLAIMED_SUFFIX)
                os.rename(path, claimed)
            except (BlockingIOError, FileNotFoundError):  # a live writer or another replay holds it
                os.close(fd)
                continue
            try:
                yield claimed
            finally:
                os.close(fd)
        # A process that died between creating a segment and naming it left an empty file. One that is
        # still being named (by a live process, between its open and its flock) is young: leave those.
        for leftover in self.directory.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - leftover.stat().st_mtime > 60:
                    _remove_if_unlocked(leftover)

    @staticmethod
    def read(path: Path) -> Iterator[dict[str, Any]]:
        """The events journaled in a segment; a line cut short by the crash is skipped."""
        with path.open("rb") as file:
            for number, raw in enumerate(file, 1):
                try:
                    event = orjson.loads(raw)
                except ValueError:
                    log.warning("spool: %s line %d is incomplete or damaged; skipped", path.name, number)
                    continue
                if isinstance(event, dict):
                    yield event

    # ---- internals (under the lock) ----------------------------------------------------------------------

    def _rotate(self) -> Segment:
        if self._active is not None:
            self._write_pending()
            self._active.sealed = True
            if self._active.finished >= self._active.appended:
                self._discard(self._active)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        temporary = self.directory / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a fresh file nobody else can hold: never waits
        path = self.directory / (name + SUFFIX)
        os.rename(temporary, path)  # only now can a starting process see it, and it is already locked
        segment = Segment(path, fd)
        self._named = True  # the directory entry must reach the disk too
        self._active = segment
        self._open.append(segment)
        return segment

    def _write_pending(self) -> None:
        if not self._pending or self._active is None:
            return
        lines = len(self._pending)
        view = memoryview(b"".join(self._pending))
        self._pending.clear()
        try:
            while view:
                view = view[os.write(self._active.fd, view) :]
        except OSError as exc:
            self._failed(lines, exc)  # the events are still queued for the store
        self._active.unsynced = True

    def _failed(self, events: int, error: Exception) -> None:
        self.unprotected += events
        if self.last_error is None or time.monotonic() - self._last_logged > 60:
            self._last_logged = time.monotonic()
            log.error(
                "event spool %s: %s; %d events so far are queued for the store without crash protection",
                self.directory,
                error,
                self.unprotected,
            )
        self.last_error = str(error)

    def _discard(self, segment: Segment) -> None:
        # Unlinked while still locked, so no other process can claim a segment that is done.
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as exc:  # a read-only or vanished directory must not stop the writer; replay dedups
            log.error("spool: cannot delete %s (%s); its events may be replayed once more", segment.path, exc)
        os.close(segment.fd)
        self._open.remove(segment)
        if segment is self._active:
            self._active = None


def encode_line(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)


def _without_texts(event: dict[str, Any]) -> dict[str, Any]:
    # Prompt and output text may touch the disk only where the store keeps it in clear (text mode redacted).
    stripped = dict(event)
    for stage in ("input", "output"):
        value = event.get(stage)
        if isinstance(value, dict) and "texts" in value:
            stripped[stage] = {k: v for k, v in value.items() if k != "texts"}
    return stripped


def _fsync_directory(directory: Path) -> None:
    # A new segment's name must survive a power cut too, not only its content.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot fsync a directory
        log.debug("spool: fsync of %s: %s", directory, exc)
    finally:
        os.close(fd)


def _remove_if_unlocked(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
