"""Every gateway decision as a structured event, written off the request path.

The request path only puts a dict on a bounded queue; a writer thread appends JSON lines. When the queue
is full the event is dropped and counted (the request is never slowed down by the log), and closing the
sink writes out everything already queued.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class EventSink(Protocol):
    dropped: int

    def emit(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullSink:
    dropped = 0

    def emit(self, event: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


_STOP = object()


class JsonlSink:
    def __init__(self, path: Path, queue_size: int = 10_000) -> None:
        self.path = path
        self.dropped = 0
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._thread = threading.Thread(target=self._write_loop, name="vallum-events", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def flush(self) -> None:
        """Wait until everything emitted so far is written."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._file.close()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 512:  # write what has piled up in one go, flush once
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is _STOP for i in batch)
            try:
                self._file.writelines(
                    json.dumps(i, ensure_ascii=False, separators=(",", ":")) + "\n"
                    for i in batch
                    if i is not _STOP
                )
                self._file.flush()
            except (OSError, TypeError, ValueError):
                log.exception("could not write %d events to %s", len(batch), self.path)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return
