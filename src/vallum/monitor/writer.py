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
import queue
import threading
import time
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from vallum.errors import EventStoreError
from vallum.monitor.database import display_url
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
    ) -> None:
        if overflow not in ("drop", "block"):
            raise EventStoreError(f"event overflow must be 'drop' or 'block', not {overflow!r}")
        self.store = store
        self.written = 0  # events committed to the database
        self.dropped = 0  # events lost: queue full, emitted after close, or in a batch that failed for good
        self.failed_batches = 0  # batches given up on after their retries
        self.last_error: str | None = None  # the latest database failure, for health checks
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._block = overflow == "block"
        self._block_timeout_s = block_timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._probe_s = probe_s
        self._healthy = True
        self._failed_while_closing: Exception | None = None
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._dropped_lock = threading.Lock()  # `dropped` is counted from the emitting and the writer thread
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vallum-event-store", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def emit(self, event: dict[str, Any]) -> None:
        if self._closing.is_set():
            self._count_dropped(1)
            return
        try:
            if self._block:
                self._queue.put(event, timeout=self._block_timeout_s)
            else:
                self._queue.put_nowait(event)
        except queue.Full:
            self._count_dropped(1)

    def flush(self) -> None:
        """Wait until every event emitted so far has been written (or counted as dropped)."""
        self._queue.join()

    def close(self) -> None:
        """Write out everything queued, then stop the writer and close the store; safe to call twice."""
        if not self._closing.is_set():
            self._closing.set()
            self._queue.put(None)  # waits for room if need be: the writer keeps draining
        self._thread.join()
        self.store.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if batch:
                self._write(batch)
            for _ in range(len(batch) + stopping):  # the stop marker was taken from the queue too
                self._queue.task_done()
        # An emit that raced with close() may have queued behind the stop marker.
        leftovers: list[Event] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftovers.append(item)
        for start in range(0, len(leftovers), self._batch_size):
            self._write(leftovers[start : start + self._batch_size])

    def _next_batch(self) -> tuple[list[Event], bool]:
        """Up to batch_size events, waiting at most max_wait_s after the first; and whether to stop."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _write(self, batch: list[Event]) -> None:
        if not self._healthy:
            if self._closing.is_set() and self._failed_while_closing:
                # Shutting down with the database gone: an unreachable host could take the connect
                # timeout per batch, so the rest of the queue is counted as lost at once.
                self._give_up(batch, self._failed_while_closing, attempts=0)
                return
            self._closing.wait(self._probe_s)  # the database was down a moment ago: do not hammer it
        attempts = 1 + self._retries if self._healthy else 1
        delay = self._backoff_s
        error: Exception | None = None
        for attempt in range(attempts):
            try:
                self.store.write_batch(batch)
            except (SQLAlchemyError, OSError) as exc:
                error = exc
                if attempt + 1 < attempts:
                    time.sleep(delay)
                    delay *= 2
                continue
            except Exception as exc:  # a bug or an event that cannot be stored: a retry cannot help
                log.exception("event store: could not convert a batch of %d events", len(batch))
                self._give_up(batch, exc, attempt + 1)
                return
            self.written += len(batch)
            if not self._healthy:
                self._healthy = True
                log.warning("event store at %s is writable again", display_url(self.store.url))
            return
        assert error is not None
        self._healthy = False
        if self._closing.is_set():
            self._failed_while_closing = error
        self._give_up(batch, error, attempts)

    def _give_up(self, batch: list[Event], error: Exception, attempts: int) -> None:
        self.failed_batches += 1
        self.last_error = _first_line(error)
        self._count_dropped(len(batch))
        log.error(
            "event store at %s: dropped a batch of %d events after %d attempt(s) (%s); %d dropped so far",
            display_url(self.store.url),
            len(batch),
            attempts,
            self.last_error,
            self.dropped,
        )

    def _count_dropped(self, n: int) -> None:
        with self._dropped_lock:
            self.dropped += n


def _first_line(error: Exception) -> str:
    # SQLAlchemy appends the whole statement and its parameters to its messages: keep events out of logs.
    text = str(getattr(error, "orig", None) or error)
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
