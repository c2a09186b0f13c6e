"""Server-sent events: reading an upstream's stream and writing ours."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerEvent:
    event: str | None
    data: str


# A line longer than this is not a server-sent event stream but a stream that never ends its lines.
MAX_LINE_BYTES = 16 * 1024 * 1024


async def read_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerEvent]:
    """Events from the raw bytes of a stream. A stream cut right after its last data line still delivers
    it; a line over MAX_LINE_BYTES raises ValueError."""
    event: str | None = None
    data: list[str] = []
    async for line in _lines(chunks):
        if not line:
            if data:
                yield ServerEvent(event, "\n".join(data))
            event, data = None, []
        elif line.startswith(":"):
            continue  # a comment, used as keep-alive
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    if data:
        yield ServerEvent(event, "\n".join(data))


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Lines split here rather than by a text and a line iterator: two fewer generator layers per
    chunk, which is most of what relaying a chunk costs."""
    pieces: list[bytes] = []  # the line being received, joined only once a line break arrives
    held = 0
    async for chunk in chunks:
        pieces.append(chunk)
        held += len(chunk)
        if b"\n" not in chunk and b"\r" not in chunk:
            if held > MAX_LINE_BYTES:
                raise ValueError(f"a line of the stream is longer than {MAX_LINE_BYTES} bytes")
            continue
        lines = b"".join(pieces).splitlines(keepends=True)
        # The last line may be cut in half, or its "\r" may be the first half of "\r\n": keep it for later.
        pieces = [lines.pop()] if lines and not lines[-1].endswith(b"\n") else []
        held = len(pieces[0]) if pieces else 0
        for raw in lines:
            yield raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    for raw in b"".join(pieces).splitlines():  # the end of the stream ends the last line too
        yield raw.decode("utf-8", errors="replace")


def encode(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
