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


async def read_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerEvent]:
    """Events from the raw bytes of a stream. Lines are split here rather than by httpx's text and line
    iterators: two fewer generator layers per chunk, which is most of what relaying a chunk costs."""
    event: str | None = None
    data: list[str] = []
    pieces: list[bytes] = []  # the line being received, joined only once a line break arrives
    async for chunk in chunks:
        pieces.append(chunk)
        if b"\n" not in chunk and b"\r" not in chunk:
            continue
        lines = b"".join(pieces).splitlines(keepends=True)
        # The last line may be cut in half, or its "\r" may be the first half of "\r\n": keep it for later.
        pieces = [lines.pop()] if lines and not lines[-1].endswith(b"\n") else []
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
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
    if pieces:  # a last line without its line break
        field, _, value = b"".join(pieces).rstrip(b"\r").decode("utf-8", errors="replace").partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:  # a stream cut right after its last data line still delivers it
        yield ServerEvent(event, "\n".join(data))


def encode(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
