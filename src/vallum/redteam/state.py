"""Resume state: a JSON-lines file in the report directory, one line per finished attempt.

The first line names the campaign (its fingerprint covers the cases, the seed and the target); a run that
finds a state file of the same campaign skips what is already done, so an interrupted run picks up where
it stopped. Errored attempts are tried again; succeeded and defended ones are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from vallum.redteam.errors import StateError
from vallum.redteam.results import Attempt

STATE_FILE = ".redteam-state.jsonl"
_HEADER_KEY = "vallum_redteam_state"


class StateFile:
    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self._stream: TextIO | None = None

    def load(self) -> dict[str, Attempt]:
        """Attempts already finished by an earlier run of this campaign (none when there is no state)."""
        if not self.path.exists():
            return {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise StateError(f"cannot read resume state {self.path}: {exc}") from exc
        if not lines:
            return {}
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.path} is not a red-team state file; remove it or pass --fresh") from exc
        if not isinstance(header, dict) or header.get(_HEADER_KEY) != 1:
            raise StateError(f"{self.path} is not a red-team state file; remove it or pass --fresh")
        if header.get("fingerprint") != self.fingerprint:
            raise StateError(
                f"{self.path} holds a different campaign ({header.get('fingerprint')}, this one is "
                f"{self.fingerprint}): the suites, mutators, seed, budget or target changed. Pass --fresh to "
                "start over, or choose another --report directory."
            )
        done: dict[str, Attempt] = {}
        for line in lines[1:]:
            try:
                attempt = Attempt.model_validate_json(line)
            except ValidationError:
                continue  # a line cut short by an interrupted write: that attempt runs again
            if attempt.outcome != "error":
                done[attempt.case_id] = attempt
        return done

    def open(self, *, fresh: bool) -> None:
        """Start appending; a fresh start (or no earlier state) writes the header first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = fresh or not self.path.exists() or self.path.stat().st_size == 0
        self._stream = self.path.open("w" if new else "a", encoding="utf-8")
        if new:
            self._stream.write(json.dumps({_HEADER_KEY: 1, "fingerprint": self.fingerprint}) + "\n")
        elif not self.path.read_bytes().endswith(b"\n"):
            self._stream.write("\n")  # end the line an interrupted write left open
        self._stream.flush()

    def record(self, attempt: Attempt) -> None:
        if self._stream is not None:
            self._stream.write(attempt.model_dump_json() + "\n")
            self._stream.flush()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
