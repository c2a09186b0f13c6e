"""What `vallum agent check --input CONV.jsonl --output OUT.jsonl [--policy P.yaml]` does; cli.py parses flags.

Each input line is `{"messages": [...], "tools": [...], "identity"?: "..." | {"tenant", "user", "api_key_id"}}`
in OpenAI chat format, whose last message is the assistant message with the calls to judge. Each output
line, in input order, is `{"line": N, "action": "allow" | "block" | "confirm", "calls": [{"id", "name",
"action", "findings", ...}], "findings": [...], "policy_version": ...}`.

A line that cannot be judged (not JSON, not an object, no messages, a last message without calls) gets
`{"line": N, "error": "...", "action": "block", "calls": [], "findings": []}`: it fails closed, the run
goes on, and the exit status is 2 at the end. Blank lines are skipped. Exit 0 otherwise.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from vallum.agents.firewall import ToolFirewall
from vallum.agents.policy import AgentPolicy
from vallum.core.types import Identity
from vallum.errors import InputError, VallumError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INVALID = 0, 2
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line is refused, not parsed


def run_agent_check(
    input_path: str | Path,
    output_path: str | Path,
    policy_path: str | Path | None = None,
    *,
    firewall: ToolFirewall | None = None,
) -> int:
    """Judge every conversation of `input_path` ('-': standard input) into `output_path` ('-': standard output).

    Returns 0, or 2 when any line was invalid. A missing or invalid policy, or an unreadable input or
    unwritable output, raises VallumError (the command's usage error, exit 2) before anything is written.
    """
    if firewall is None:
        policy = AgentPolicy.from_file(policy_path) if policy_path is not None else AgentPolicy()
        firewall = ToolFirewall(policy)
    invalid = judged = 0
    with ExitStack() as stack:
        source = _open_input(input_path, stack)
        out = _open_output(output_path, stack)
        for number, line in _lines(source):
            result = _judge_line(firewall, number, line)
            if "error" in result:
                invalid += 1
                print(f"vallum: {input_path}: line {number}: {result['error']}", file=sys.stderr)
            else:
                judged += 1
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()
    print(f"vallum: judged {judged} conversations; {invalid} invalid", file=sys.stderr)
    return EXIT_INVALID if invalid else EXIT_OK


def _judge_line(firewall: ToolFirewall, number: int, line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        return _error(number, f"line is {len(line)} bytes; the limit is {MAX_LINE_BYTES}")
    try:
        row = json.loads(line)
    except UnicodeDecodeError as exc:
        return _error(number, f"not UTF-8: {exc.reason} at byte {exc.start}")
    except ValueError as exc:
        return _error(number, f"not valid JSON: {exc}")
    if not isinstance(row, dict):
        return _error(number, f'a line must be a JSON object with "messages", not a {type(row).__name__}')
    if "messages" not in row:
        return _error(number, 'the object has no "messages"')
    try:
        identity = _identity(row.get("identity"))
        decision = firewall.check(row["messages"], row.get("tools"), identity)
    except VallumError as exc:
        return _error(number, str(exc))
    except Exception as exc:  # never a crash, never an allowed call: fail closed and say so
        log.exception("agent check failed on line %d", number)
        return _error(number, f"internal error: {type(exc).__name__}: {exc}")
    return {"line": number, **decision.to_dict()}


def _identity(raw: Any) -> Identity | str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, dict):
        fields = {k: raw.get(k) for k in ("tenant", "user", "api_key_id")}
        if all(v is None or isinstance(v, str) for v in fields.values()):
            return Identity(**fields)
    raise InputError('"identity" must be a string or an object with string "tenant", "user", "api_key_id"')


def _error(number: int, message: str) -> dict[str, Any]:
    return {"line": number, "error": message, "action": "block", "calls": [], "findings": []}


def _lines(source: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


def _open_input(path: str | Path, stack: ExitStack) -> IO[bytes]:
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(Path(path).open("rb"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _open_output(path: str | Path, stack: ExitStack) -> IO[str]:
    if str(path) == "-":
        return sys.stdout
    try:
        return stack.enter_context(Path(path).open("w", encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from exc
