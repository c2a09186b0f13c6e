"""Batch scanning of JSON-lines files: rows in, verdicts out, in input order, bad rows reported not fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from vallum.core.guard import Guard
from vallum.core.types import Message, Source
from vallum.errors import InputError

PASSTHROUGH_FIELDS = ("id",)


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    message: Message | None
    record: dict[str, Any]
    error: str | None = None

    @property
    def passthrough(self) -> dict[str, Any]:
        """Input fields copied to the output line so results can be joined back to inputs."""
        return {k: self.record[k] for k in PASSTHROUGH_FIELDS if k in self.record}


@dataclass(slots=True)
class BatchReport:
    rows: int = 0
    scanned: int = 0
    invalid: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)


def read_rows(stream: IO[bytes], *, strict_source: bool = True, start: int = 1) -> Iterator[tuple[Row, int]]:
    """Parse each line; yield the row and the number of bytes it used (for progress bars).

    With `strict_source=False` a `source` that names no vallum source (labelled datasets use the field
    for provenance, "owner/repo@commit:path") reads as a user turn instead of an invalid row. `start` is
    the line number of the stream's first line (a shard of a larger file starts part-way through it).
    """
    for number, raw in enumerate(stream, start=start):
        size = len(raw)
        if not raw.strip():
            continue
        yield parse_row(raw, number, strict_source=strict_source), size


def parse_row(raw: bytes, number: int, *, strict_source: bool = True) -> Row:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Row(number, None, {}, f"invalid UTF-8 at byte {exc.start}: {exc.reason}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return Row(number, None, {}, f"invalid JSON: {exc.msg} (column {exc.colno})")
    if not isinstance(obj, dict):
        return Row(number, None, {}, f"expected a JSON object, got {type(obj).__name__}")
    return parse_record(obj, number, strict_source=strict_source)


def parse_record(obj: dict[str, Any], number: int, *, strict_source: bool = True) -> Row:
    """A decoded record (a JSON object, a Parquet row) as a row to scan, or as an invalid row saying why."""
    body = obj.get("text")
    if not isinstance(body, str):
        return Row(number, None, {}, "missing string field 'text'")
    try:
        source = Source(obj.get("source") or Source.USER)
    except ValueError:
        if not strict_source:
            source = Source.USER
        else:
            allowed = ", ".join(s.value for s in Source)
            return Row(number, None, {}, f"unknown source {obj.get('source')!r}; expected one of {allowed}")
    return Row(number, Message(body, source=source), obj)


def scan_stream(
    guard: Guard,
    rows: Iterator[tuple[Row, int]],
    out: IO[str],
    *,
    batch_size: int = 64,
    on_progress: Any = None,
) -> BatchReport:
    """Scan rows in batches and write one output line per input row, flushing after every batch.

    Output is written batch by batch, so an interrupted run keeps everything already scanned.
    """
    report = BatchReport()
    pending: list[Row] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending_bytes
        for line in scan_chunk(guard, pending, report):
            out.write(line + "\n")
        out.flush()
        if on_progress is not None:
            on_progress(pending_bytes)
        pending.clear()
        pending_bytes = 0

    for row, size in rows:
        pending.append(row)
        pending_bytes += size
        if len(pending) >= batch_size:
            flush()
    if pending:
        flush()
    return report


def scan_chunk(guard: Guard, rows: Sequence[Row], report: BatchReport) -> list[str]:
    """Scan one batch of rows together; their output lines (JSON, without the newline) in order.

    Every engine writes its output through this function, so the local and the Ray engine agree row for row.
    """
    verdicts = iter(guard.scan_batch([r.message for r in rows if r.message is not None]))
    lines = []
    for row in rows:
        report.rows += 1
        if row.error is not None:
            report.invalid.append(f"line {row.line}: {row.error}")
            record: dict[str, Any] = {**row.passthrough, "line": row.line, "error": row.error}
        else:
            verdict = next(verdicts)
            report.scanned += 1
            report.actions[verdict.action.value] = report.actions.get(verdict.action.value, 0) + 1
            record = {**row.passthrough, **verdict.to_dict()}
        lines.append(json.dumps(record, ensure_ascii=False))
    return lines


def read_text_arg(value: str, stdin: IO[bytes]) -> str:
    if value != "-":
        return value
    raw = stdin.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"standard input is not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
