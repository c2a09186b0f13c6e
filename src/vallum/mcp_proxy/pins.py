"""Pinned tool definitions: what a server's tools looked like when someone approved them.

A "rug pull" is a server that shows an honest tool, is approved, and later changes what the tool says
or takes. Each tool's definition (title, description, input and output schemas, annotations) is pinned by
its SHA-256; a definition that no longer matches its pin is reported and the tool is withheld until a
person approves the change.

The pins live in a JSON file meant to be read and edited by people:

```json
{"version": 1,
 "servers": {"weather": {"tools": {"get_weather": {
     "sha256": "9f2c...", "approved_at": "2026-05-01T09:30:00+00:00", "definition": {...},
     "pending": {"sha256": "41aa...", "seen_at": "...", "definition": {...}}}}}}}
```

`pending` holds a definition seen but not approved (a changed one, or a new one while new tools need
approval); `vallum mcp-proxy --approve` pins every pending definition. Without a file the pins last as
long as the process (trust on first use within a session). The file is re-read when it changes on disk,
so an approval given while a proxy runs takes effect at its next listing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from vallum.errors import InputError

PIN_FILE_VERSION = 1
# The parts of a definition that tell the model what a tool does and takes.
PINNED_FIELDS = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")


class PinError(InputError):
    """The pin file cannot be read or written, or is not a pin file; the message names the file."""


class PinState(StrEnum):
    PINNED = "pinned"  # the definition matches its approved pin
    NEW = "new"  # no pin for this tool yet
    CHANGED = "changed"  # a pin exists and the definition differs from it


@dataclass(frozen=True, slots=True)
class PinCheck:
    state: PinState
    digest: str  # of the definition seen now
    pinned: str | None = None  # the approved digest, if any


def pinned_definition(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {key: tool[key] for key in PINNED_FIELDS if tool.get(key) is not None}


def tool_digest(tool: Mapping[str, Any]) -> str:
    canonical = json.dumps(pinned_definition(tool), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class PinStore:
    """The pins of one server's tools, in `path` (shared with other servers' pins) or in memory."""

    def __init__(self, path: str | Path | None, server: str) -> None:
        self.path = Path(path) if path is not None else None
        self.server = server
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"version": PIN_FILE_VERSION, "servers": {}}
        self._stamp: tuple[int, int] | None = None
        self._reload()

    def check(self, tool: Mapping[str, Any]) -> PinCheck:
        digest = tool_digest(tool)
        with self._lock:
            self._reload()
            entry = self._tools().get(str(tool.get("name")))
        pinned = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(pinned, str):
            return PinCheck(PinState.NEW, digest)
        return PinCheck(PinState.PINNED if pinned == digest else PinState.CHANGED, digest, pinned)

    def approve(self, tool: Mapping[str, Any]) -> None:
        """Pin the definition as it is now (and drop any pending one)."""
        with self._lock:
            self._reload()
            self._tools()[str(tool.get("name"))] = {
                "sha256": tool_digest(tool),
                "approved_at": _now(),
                "definition": pinned_definition(tool),
            }
            self._save()

    def hold(self, tool: Mapping[str, Any]) -> None:
        """Record a definition that waits for approval, beside the pin (if any) it would replace."""
        digest = tool_digest(tool)
        with self._lock:
            self._reload()
            entry = self._tools().setdefault(str(tool.get("name")), {})
            pending = entry.get("pending")
            if isinstance(pending, dict) and pending.get("sha256") == digest:
                return
            entry["pending"] = {"sha256": digest, "seen_at": _now(), "definition": pinned_definition(tool)}
            self._save()

    def pending(self) -> list[str]:
        """Names of tools with a definition waiting for approval."""
        with self._lock:
            self._reload()
            return sorted(
                name for name, entry in self._tools().items() if isinstance(entry.get("pending"), dict)
            )

    # ---- the file ------------------------------------------------------------------------------------------

    def _tools(self) -> dict[str, dict[str, Any]]:
        servers = self._data.setdefault("servers", {})
        server = servers.setdefault(self.server, {})
        tools: dict[str, dict[str, Any]] = server.setdefault("tools", {})
        return tools

    def _reload(self) -> None:
        if self.path is None:
            return
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise PinError(f"cannot read pin file {self.path}: {exc.strerror}") from exc
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise PinError(f"cannot read pin file {self.path}: {exc}") from exc
        except ValueError as exc:
            raise PinError(f"pin file {self.path} is not valid JSON: {exc}") from exc
        if not _is_pin_file(data):
            raise PinError(
                f'{self.path} is not a vallum pin file: expected {{"version": {PIN_FILE_VERSION}, "servers": '
                '{SERVER: {"tools": {TOOL: {"sha256": ...}}}}}'
            )
        self._data, self._stamp = data, stamp

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps(self._data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise PinError(f"cannot write pin file {self.path}: {exc.strerror}") from exc
        stat = self.path.stat()
        self._stamp = (stat.st_mtime_ns, stat.st_size)


def _is_pin_file(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("version") != PIN_FILE_VERSION:
        return False
    servers = data.get("servers")
    if not isinstance(servers, dict):
        return False
    for server in servers.values():
        if not isinstance(server, dict) or not isinstance(server.get("tools", {}), dict):
            return False
        if not all(isinstance(entry, dict) for entry in server.get("tools", {}).values()):
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
