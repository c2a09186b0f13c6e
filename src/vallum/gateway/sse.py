"""Server-sent events: reading an upstream's stream and writing ours."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str | None
    data: str


# A line longer than this is not a server-sent event stream but a stream that never ends its lines.
MAX_LINE_BYTES = 16 * 1024 * 1024


class EventReader:
    """Events from the raw bytes of a stream, fed in whatever pieces the network delivers. Synchronous, so
    that all the events of one piece are handled in one go: a stream of small events costs per piece what
    an asynchronous iterator would cost per event. Lazy within a piece: one read from a fast upstream can
    hold a whole answer, and its first event should not wait while the last is parsed."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []  # the line being received, joined only once a line break arrives
        self._held = 0
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[ServerEvent]:
        """The events that `chunk` completes, to be taken at once; a line over MAX_LINE_BYTES raises
        ValueError."""
        self._pieces.append(chunk)
        self._held += len(chunk)
        if b"\n" not in chunk and b"\r" not in chunk:
            if self._held > MAX_LINE_BYTES:
                raise ValueError(f"a line of the stream is longer than {MAX_LINE_BYTES} bytes")
            return
        lines = b"".join(self._pieces).splitlines(keepends=True)
        # The last line may be cut in half, or its "\r" may be the first half of "\r\n": keep it for later.
        self._pieces = [lines.pop()] if lines and not lines[-1].endswith(b"\n") else []
        self._held = len(self._pieces[0]) if self._pieces else 0
        events: list[ServerEvent] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"), events)
            if events:
                yield events.pop()

    def end(self) -> list[ServerEvent]:
        """What the end of the stream completes: a stream cut right after its last data line still
        delivers it."""
        events: list[ServerEvent] = []
        for raw in b"".join(self._pieces).splitlines():
            self._line(raw.decode("utf-8", errors="replace"), events)
        self._pieces, self._held = [], 0
        self._line("", events)
        return events

    def _line(self, line: str, events: list[ServerEvent]) -> None:
        if line.startswith("data: "):  # nearly every line of a stream
            self._data.append(line[6:])
        elif not line:
            if self._data:
                events.append(ServerEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        elif not line.startswith(":"):  # a comment is a keep-alive
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self._event = value
            elif field == "data":
                self._data.append(value)


def encode(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data.encode() if isinstance(data, str) else orjson.dumps(data)
    head = f"event: {event}\n".encode() if event else b""
    return b"%bdata: %b\n\n" % (head, payload)
