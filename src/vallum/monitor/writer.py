"""StoreSink: the gateway's event sink that writes to an EventStore in batches, off the request path.

`emit` only puts the event on a bounded queue (and, with a spool, journals it: see spool.py). A writer thread
takes up to `batch_size` events, or what arrived within `max_wait_s` of the first, and writes them in one
transaction.

When the queue is full, `overflow` decides:
- "drop" (default): the event is dropped and counted in `dropped`; `emit` never waits, so the event loop
  never stalls on the database.
- "block": `emit` waits up to `block_timeout_s` for space (back-pressure: in the gateway this stalls the
  event loop, so every request slows down with the store), then drops and counts like "drop".

When the database fails (lost connection, disk full, table gone), a batch is retried `retries` times with
doubling back-off from `backoff_s`; if it still fails it is dropped, counted in `dropped` and
`failed_batches`, and logged with the cause. Until a write succeeds again, each further batch gets a single
try after a pause of `probe_s`, so an outage costs no busy loop; meanwhile the queue fills up and
`overflow` applies. If a batch fails for good during close(), the rest of the queue is counted as dropped
at once, so shutdown never waits on a dead database. Nothing is ever raised to the caller of `emit`.

`close()` writes out everything already queued before it returns: no event that `emit` accepted is lost on
a clean shutdown while the database is reachable. Without a spool a crash loses what was queued and the
batch in flight (up to `queue_size` events); with one (`spool=DIRECTORY`, the gateway's default) it loses
fewer than `batch_size`, the journal lines not yet handed to the OS, and the next sink started on that
directory replays the rest into the store (benchmarks/event_store.py measures both). The sink owns its
store and closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from vallum.errors import EventStoreError
from vallum.monitor.database import display_url
from vallum.monitor.spool import Segment, Spool
from vallum.monitor.store import EventStore

log = logging.getLogger(__name__)

Overflow = Literal["drop", "block"]
Event = dict[str, Any]


class StoreSink:
    def __init__(
        self,
        store: EventStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        max_wait_s: float = 0.05,
        overflow: Overflow = "drop",
        block_timeout_s: float = 1.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        probe_s: float = 1.0,
        spool: Path | None = None,
    ) -> None:
        if overflow not in ("drop", "block"):
            raise EventStoreError(f"event overflow must be 'drop' or 'block', not {overflow!r}")
        self.store = store
        self.written = 0  # events committed to the database
        self.dropped = 0  # events lost: queue full, emitted after close, or in a batch that failed for good
        self.failed_batches = 0  # batches given up on after their retries
        self.replayed = 0  # events a crashed process had journaled, written from the spool at start
        self.last_error: str | None = None  # the latest database failure, for health checks
        # Each line is handed to the OS at the latest when a batch's worth has piled up, so a crash loses
        # less than one batch; a segment of one queue's length keeps a few files open at most.
        self.spool = (
            Spool(
                spool,
                flush_every=batch_size,
                segment_events=max(queue_size, batch_size),
                keep_text=store.text_mode == "redacted",
            )
            if spool is not None
            else None
        )
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._block = overflow == "block"
        self._block_timeout_s = block_timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._probe_s = probe_s
        self._healthy = True
        self._failed_while_closing: Exception | None = None
        # One lock for the queue and the counters, so that checking for room, journaling and queueing an
        # event happen together: an event is either accepted (journaled and queued) or dropped, never half.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # the writer waits for events
        self._room = threading.Condition(self._lock)  # "block" emitters wait for space
        self._idle = threading.Condition(self._lock)  # flush() waits for everything to be finished
        self._queue: deque[tuple[Segment | None, Event]] = deque()
        self._unfinished = 0  # queued or being written
        self._replaying = self.spool is not None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vallum-event-store", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def emit(self, event: dict[str, Any]) -> None:
        line = self.spool.encode(event) if self.spool is not None else None
        with self._lock:
            if self._closing.is_set():
                self.dropped += 1
                return
            if len(self._queue) >= self._queue_size:
                if not self._block or not self._room.wait_for(self._has_room, self._block_timeout_s):
                    self.dropped += 1
                    return
                if self._closing.is_set():
                    self.dropped += 1
                    return
            segment = self.spool.append(line) if self.spool is not None and line is not None else None
            self._queue.append((segment, event))
            self._unfinished += 1
            # The writer waits either for a first event or for a full batch: wake it only for those.
            if len(self._queue) == 1 or len(self._queue) == self._batch_size:
                self._ready.notify()

    def flush(self) -> None:
        """Wait until every event emitted so far (and any replay) has been written or counted as dropped."""
        with self._lock:
            self._idle.wait_for(lambda: self._unfinished == 0 and not self._replaying)

    def close(self) -> None:
        """Write out everything queued, then stop the writer and close the store; safe to call twice."""
        with self._lock:
            self._closing.set()
            self._ready.notify_all()
            self._room.notify_all()
        self._thread.join()
        if self.spool is not None:
            self.spool.close()
        self.store.close()

    def _has_room(self) -> bool:
        return len(self._queue) < self._queue_size or self._closing.is_set()

    def _run(self) -> None:
        if self.spool is not None:
            self._replay(self.spool)
        while True:
            batch = self._next_batch()
            if not batch:
                return  # closing, and everything queued is written
            if self.spool is not None:
                self.spool.sync()  # the journal is on disk before the batch it protects is committed
            settled = self._write([event for _, event in batch])
            if self.spool is not None and settled:
                # Events lost to a database outage stay journaled: the next start replays them.
                self.spool.finished(Counter(segment for segment, _ in batch if segment is not None))
            with self._lock:
                self._unfinished -= len(batch)
                if self._unfinished == 0:
                    self._idle.notify_all()

    def _next_batch(self) -> list[tuple[Segment | None, Event]]:
        """Up to batch_size events, waiting at most max_wait_s after the first; empty once closed and drained."""
        with self._lock:
            while not self._queue and not self._closing.is_set():
                self._ready.wait()
            deadline = time.monotonic() + self._max_wait_s
            while 0 < len(self._queue) < self._batch_size and not self._closing.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            taken = min(len(self._queue), self._batch_size)
            batch = [self._queue.popleft() for _ in range(taken)]
            self._room.notify(taken)
            return batch

    def _replay(self, spool: Spool) -> None:
        """Write what a process that died had journaled; a segment the store refuses stays for next time."""
        try:
            for path in spool.orphans():
                journaled = list(spool.read(path))
                try:
                    for start in range(0, len(journaled), self._batch_size):
                        self._commit(journaled[start : start + self._batch_size], 1 + self._retries)
                except (SQLAlchemyError, OSError) as exc:
                    self.last_error = _first_line(exc)
                    log.error(
                        "event store at %s: could not replay %s (%s); the journal is kept for the next start",
                        display_url(self.store.url),
                        path,
                        self.last_error,
                    )
                    break  # the database is down: trying every other segment would only stall new events
                path.unlink(missing_ok=True)
                self.replayed += len(journaled)
                if not journaled:
                    continue  # a segment created just before the crash, nothing in it yet
                log.warning(
                    "event store: replayed %d events journaled before a crash (%s)", len(journaled), path
                )
        except Exception:  # a damaged spool must not stop the writer; the log says what broke
            log.exception("event spool %s: replay failed", spool.directory)
        finally:
            with self._lock:
                self._replaying = False
                self._idle.notify_all()

    def _commit(self, batch: list[Event], attempts: int) -> None:
        """One transaction, retried with doubling back-off; raises the last database error."""
        delay = self._backoff_s
        for attempt in range(attempts):
            try:
                self.store.write_batch(batch)
                return
            except (SQLAlchemyError, OSError):
                if attempt + 1 == attempts:
                    raise
                time.sleep(delay)
                delay *= 2

    def _write(self, batch: list[Event]) -> bool:
        """False when the batch was given up because the database failed (a later replay may store it)."""
        if not self._healthy:
            if self._closing.is_set() and self._failed_while_closing:
                # Shutting down with the database gone: an unreachable host could take the connect
                # timeout per batch, so the rest of the queue is counted as lost at once.
                self._give_up(batch, self._failed_while_closing, attempts=0)
                return False
            self._closing.wait(self._probe_s)  # the database was down a moment ago: do not hammer it
        attempts = 1 + self._retries if self._healthy else 1
        try:
            self._commit(batch, attempts)
        except (SQLAlchemyError, OSError) as exc:
            self._healthy = False
            if self._closing.is_set():
                self._failed_while_closing = exc
            self._give_up(batch, exc, attempts)
            return False
        except Exception as exc:  # a bug or an event that cannot be stored: a retry cannot help
            log.exception("event store: could not convert a batch of %d events", len(batch))
            self._give_up(batch, exc, 1)
            return True
        self.written += len(batch)
        if not self._healthy:
            self._healthy = True
            log.warning("event store at %s is writable again", display_url(self.store.url))
        return True

    def _give_up(self, batch: list[Event], error: Exception, attempts: int) -> None:
        self.failed_batches += 1
        self.last_error = _first_line(error)
        with self._lock:
            self.dropped += len(batch)
        log.error(
            "event store at %s: dropped a batch of %d events after %d attempt(s) (%s); %d dropped so far",
            display_url(self.store.url),
            len(batch),
            attempts,
            self.last_error,
            self.dropped,
        )


def _first_line(error: Exception) -> str:
    # SQLAlchemy appends the whole statement and its parameters to its messages: keep events out of logs.
    text = str(getattr(error, "orig", None) or error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
