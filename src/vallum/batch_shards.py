"""Batch input cut into shards, each scanned on its own and kept on disk, so a stopped scan resumes.

A scan of INPUT into OUT keeps its work in OUT.shards/: `plan.json` (the input's size and time, the policy,
the shards), `manifest.jsonl` (one line per finished shard, appended as shards finish) and `parts/` (each
shard's output lines, written whole or not at all). A rerun with the same input and policy skips the
shards in the manifest; when every shard is done the parts are joined into OUT and the folder goes.

Shards end on multiples of the batch size, so every batch the Guard sees holds the same rows as in the
local engine's single pass, and both engines write the same bytes. Nothing here needs Ray: any engine
that can call `scan_shard` on some worker can run a plan.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from vallum.batch import PASSTHROUGH_FIELDS, BatchReport, Row, parse_record, read_rows, scan_chunk
from vallum.core.guard import Guard
from vallum.errors import InputError

Format = Literal["jsonl", "parquet"]
PLAN_VERSION = 1
MAX_SHARD_ROWS = 16_384  # bounds a shard's memory (its input and output are held whole) and lost work
SHARDS_PER_WORKER = 8  # enough shards that workers finish together and progress moves often
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True, slots=True)
class Shard:
    """Rows `start`..`stop` of the input: byte offsets in a JSON-lines file, row indices in a Parquet file."""

    index: int
    path: str
    format: Format
    start: int
    stop: int
    first_line: int  # the line (JSON lines) or 1-based row (Parquet) number at `start`
    rows: int  # rows to scan: blank lines are not rows

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Shard:
        return cls(**json.loads(text))


@dataclass(slots=True)
class ShardResult:
    """What a worker reports for one finished shard; its output lines are in the shard's part file."""

    shard: int
    rows: int = 0
    scanned: int = 0
    invalid: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ShardResult:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class Plan:
    input: str
    format: Format
    size: int
    mtime_ns: int
    policy: str  # the policy's label (version@digest): shards scanned under another policy are stale
    batch_size: int
    rows: int
    shards: tuple[Shard, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": PLAN_VERSION, "shards": [asdict(s) for s in self.shards]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')!r}")
        fields = {k: v for k, v in data.items() if k != "version"}
        return cls(**{**fields, "shards": tuple(Shard(**s) for s in data["shards"])})

    def same_work(self, other: Plan) -> bool:
        """Whether `other` scans the same input under the same policy in the same batches."""
        keys = ("input", "format", "size", "mtime_ns", "policy", "batch_size")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def input_format(path: Path) -> Format:
    return "parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "jsonl"


def make_plan(
    path: Path, *, policy: str, batch_size: int, workers: int, shard_rows: int | None = None
) -> Plan:
    """Cut `path` into shards of whole batches: `shard_rows` rows each, or enough for every worker to get
    several (at most MAX_SHARD_ROWS each) when it is None."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    fmt = input_format(path)
    total = _count_parquet_rows(path) if fmt == "parquet" else _count_jsonl_rows(path)
    if shard_rows is None:
        shard_rows = min(MAX_SHARD_ROWS, math.ceil(total / (max(1, workers) * SHARDS_PER_WORKER)))
    per_shard = max(1, math.ceil(shard_rows / batch_size)) * batch_size
    cuts = _parquet_cuts(total, per_shard) if fmt == "parquet" else _jsonl_cuts(path, per_shard)
    shards = tuple(
        Shard(i, str(path.resolve()), fmt, start, stop, first, rows)
        for i, (start, stop, first, rows) in enumerate(cuts)
    )
    return Plan(str(path.resolve()), fmt, stat.st_size, stat.st_mtime_ns, policy, batch_size, total, shards)


def _count_jsonl_rows(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(1 for raw in stream if raw.strip())


def _jsonl_cuts(path: Path, per_shard: int) -> list[tuple[int, int, int, int]]:
    """(start byte, stop byte, first line number, rows) of each shard; blank lines belong to the shard
    they fall in but are not rows, as in `read_rows`."""
    cuts = []
    start = offset = rows = 0
    first = line = 1
    with path.open("rb") as stream:
        for raw in stream:
            offset += len(raw)
            line += 1
            if raw.strip():
                rows += 1
                if rows == per_shard:
                    cuts.append((start, offset, first, rows))
                    start, first, rows = offset, line, 0
    if rows:
        cuts.append((start, offset, first, rows))
    return cuts


def _count_parquet_rows(path: Path) -> int:
    try:
        return int(_parquet_file(path).metadata.num_rows)
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises its own errors for files that are not Parquet
        raise InputError(f"cannot read {path} as Parquet: {exc}") from exc


def _parquet_cuts(total: int, per_shard: int) -> list[tuple[int, int, int, int]]:
    return [
        (s, min(s + per_shard, total), s + 1, min(per_shard, total - s)) for s in range(0, total, per_shard)
    ]


def _parquet_file(path: Path | str) -> Any:
    try:  # pyarrow ships no type information; through import_module its API is plainly Any
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise InputError("reading Parquet needs pyarrow: pip install 'vallum[ray]'") from exc
    return parquet.ParquetFile(path)


def shard_rows(shard: Shard) -> Iterator[Row]:
    """The rows of one shard, numbered as in the whole input."""
    if shard.format == "parquet":
        yield from _parquet_rows(Path(shard.path), shard.start, shard.stop)
        return
    with open(shard.path, "rb") as stream:
        stream.seek(shard.start)
        data = stream.read(shard.stop - shard.start)
    for row, _ in read_rows(io.BytesIO(data), start=shard.first_line):
        yield row


def read_parquet_rows(path: Path) -> Iterator[tuple[Row, int]]:
    """All rows of a Parquet file as `read_rows` gives JSON lines (with 1 as each row's size), for the
    local engine."""
    total = _count_parquet_rows(path)
    for start in range(0, total, MAX_SHARD_ROWS):
        for row in _parquet_rows(path, start, min(start + MAX_SHARD_ROWS, total)):
            yield row, 1


def _parquet_rows(path: Path, start: int, stop: int) -> Iterator[Row]:
    """Rows `start`..`stop` as records of the columns a row uses ("text", "source", the passthrough ones);
    the row number (1-based) stands where JSON lines have a line number."""
    parquet = _parquet_file(path)
    names = set(parquet.schema_arrow.names)
    columns = [c for c in ("text", "source", *PASSTHROUGH_FIELDS) if c in names]
    groups, first_row, row_at = [], None, 0
    for g in range(parquet.metadata.num_row_groups):
        count = parquet.metadata.row_group(g).num_rows
        if row_at < stop and row_at + count > start:
            groups.append(g)
            first_row = row_at if first_row is None else first_row
        row_at += count
    if not groups or first_row is None:
        return
    table = parquet.read_row_groups(groups, columns=columns).slice(start - first_row, stop - start)
    for offset, record in enumerate(table.to_pylist()):
        yield parse_record(_jsonable(record), start + offset + 1)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """Parquet values JSON has no type for (timestamps, decimals, bytes) as their text, so ids survive."""
    out: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return out


def scan_shard(guard: Guard, shard: Shard, part: Path, batch_size: int) -> ShardResult:
    """Scan one shard in batches of `batch_size` and write its output lines to `part`, whole or not at all."""
    report = BatchReport()
    tmp = part.with_name(f"{part.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as out:
        batch: list[Row] = []
        for row in shard_rows(shard):
            batch.append(row)
            if len(batch) == batch_size:
                out.writelines(line + "\n" for line in scan_chunk(guard, batch, report))
                batch.clear()
        if batch:
            out.writelines(line + "\n" for line in scan_chunk(guard, batch, report))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, part)
    return ShardResult(shard.index, report.rows, report.scanned, report.invalid, report.actions)


class ShardStore:
    """OUT.shards/: the plan, the manifest of finished shards and their parts, for one output file."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.root = output.with_name(output.name + ".shards")
        self.parts = self.root / "parts"
        self._lock: IO[bytes] | None = None

    def open(self, plan: Plan, on_stale: Callable[[str], None]) -> Plan:
        """Take the folder for this run and return the plan to follow: the stored one when it is for the
        same work (its shards stay done), else `plan` on a clean folder (`on_stale` hears why)."""
        self.parts.mkdir(parents=True, exist_ok=True)
        self._lock = (self.root / "lock").open("wb")
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise InputError(f"another scan is writing {self.output} (it holds {self.root}/lock)") from exc
        stored = self._stored_plan()
        if stored is not None and stored.same_work(plan):
            return stored
        if stored is not None:
            on_stale(f"{self.root} holds shards of another input or policy; starting over")
            (self.root / "manifest.jsonl").unlink(missing_ok=True)
            for leftover in self.parts.iterdir():
                leftover.unlink()
        _write_atomic(self.root / "plan.json", json.dumps(plan.to_dict()))
        return plan

    def _stored_plan(self) -> Plan | None:
        try:
            return Plan.from_dict(json.loads((self.root / "plan.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def part(self, index: int) -> Path:
        return self.parts / f"{index:06d}.jsonl"

    def done(self) -> dict[int, ShardResult]:
        """Finished shards by index. A line cut short by a crash is ignored (its shard runs again), and so is
        a line whose part file has gone."""
        results: dict[int, ShardResult] = {}
        with (
            contextlib.suppress(FileNotFoundError),
            (self.root / "manifest.jsonl").open(encoding="utf-8") as f,
        ):
            for line in f:
                try:
                    result = ShardResult.from_json(line)
                except (ValueError, TypeError):
                    continue
                if self.part(result.shard).exists():
                    results[result.shard] = result
        return results

    def record(self, result: ShardResult) -> None:
        """Add a finished shard to the manifest, durably, after its part file is in place."""
        with (self.root / "manifest.jsonl").open("a", encoding="utf-8") as f:
            f.write(result.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self, plan: Plan) -> None:
        """Join the parts in shard order into the output file (replaced whole), then remove the folder."""
        tmp = self.output.with_name(f"{self.output.name}.tmp-{os.getpid()}")
        with tmp.open("wb") as out:
            for shard in plan.shards:
                with self.part(shard.index).open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.output)
        self.close()
        shutil.rmtree(self.root)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
