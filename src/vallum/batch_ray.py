"""`vallum scan --engine ray`: a JSON-lines or Parquet file scanned on a Ray cluster, shard by shard.

The driver cuts the input into shards (`vallum.batch_shards`), hands the unfinished ones to a pool of Ray
Data actors, each of which loads the Guard once and writes each shard's output to its part file, and
records every finished shard in the manifest as it arrives. An interrupted scan resumes where it stopped;
the finished output is byte for byte what the local engine writes.

Workers read the input and write the parts by path, so on a cluster of several machines the input and
the output's folder must be on storage every node mounts, and vallum must be installed on every node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vallum.batch_shards import Shard, ShardResult, ShardStore, make_plan, scan_shard
from vallum.core.guard import Guard
from vallum.core.policy import Policy
from vallum.errors import InputError, VallumError

EXIT_OK, EXIT_USAGE = 0, 2
INSTALL_HINT = "pip install 'vallum[ray]'"
_LOG_EVERY_S = 30.0  # progress lines when standard error is not a terminal (batch jobs, CI logs)

Progress = Callable[[int, int], None]  # (rows done, rows in all)


class RayUnavailableError(VallumError):
    """Ray (or Ray Data) is not installed, or the cluster at the given address cannot be reached."""


class RayScanError(VallumError):
    """A worker failed while scanning a shard (the finished shards are kept for a rerun)."""


@dataclass(slots=True)
class RayScanReport:
    rows: int = 0
    scanned: int = 0
    invalid: list[str] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    shards: int = 0
    resumed: int = 0  # shards found finished by an earlier run and not scanned again
    workers: int = 0
    seconds: float = 0.0


class ShardScanner:
    """A Ray Data actor: one Guard for its whole life, one shard per call (batch size 1)."""

    def __init__(self, policy: Policy, batch_size: int, parts: str) -> None:
        self.guard = Guard(policy)
        self.batch_size = batch_size
        self.parts = Path(parts)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        results = []
        for spec in batch["item"]:
            shard = Shard.from_json(str(spec))
            result = scan_shard(self.guard, shard, self.parts / f"{shard.index:06d}.jsonl", self.batch_size)
            results.append(result.to_json())
        return {"result": results}


def run_ray_scan(
    input: Path,
    output: Path,
    policy: Path | None = None,
    address: str | None = None,
    *,
    workers: int | None = None,
    batch_size: int = 64,
    shard_rows: int | None = None,
    skip_invalid: bool = False,
    progress: bool = True,
) -> int:
    """The CLI's `--engine ray`: scan, print what the local engine prints to standard error, return the
    exit status (2 when some rows were invalid and `skip_invalid` is off)."""
    try:
        report = ray_scan(
            input,
            output,
            policy,
            address,
            workers=workers,
            batch_size=batch_size,
            shard_rows=shard_rows,
            on_progress=_progress_reporter(input) if progress else None,
        )
    except KeyboardInterrupt:
        print(
            f"vallum: finished shards are kept in {ShardStore(output).root}; run the same command to resume",
            file=sys.stderr,
        )
        raise
    for problem in report.invalid:
        print(f"vallum: {input}: {problem}", file=sys.stderr)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(report.actions.items())) or "nothing"
    print(
        f"vallum: scanned {report.scanned} of {report.rows} rows ({summary}); {len(report.invalid)} invalid",
        file=sys.stderr,
    )
    return EXIT_USAGE if report.invalid and not skip_invalid else EXIT_OK


def ray_scan(
    input: Path,
    output: Path,
    policy: Path | Policy | None = None,
    address: str | None = None,
    *,
    workers: int | None = None,
    batch_size: int = 64,
    shard_rows: int | None = None,
    on_progress: Progress | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> RayScanReport:
    """Scan `input` (JSON lines, or Parquet by its suffix) into `output` on Ray; see the module's docstring.

    `address` is a running cluster's (as `ray.init` takes it); without it a Ray already initialised in this
    process is used, else a local one is started for the scan and stopped after it. `workers` actors
    (default: one per CPU of the cluster) scan at once. `on_shard` hears of each shard as it is recorded.
    """
    started = time.perf_counter()
    if str(input) == "-" or str(output) == "-":
        raise InputError("the ray engine reads and writes files (it resumes from them): give paths, not '-'")
    if batch_size < 1:
        raise InputError("the batch size must be at least 1")
    loaded = policy if isinstance(policy, Policy) else Guard(policy).policy  # a bad policy fails here, early
    store = ShardStore(output)
    report = RayScanReport()
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        ray = stack.enter_context(ray_running(address, workers)) if address is not None else None
        planned_workers = workers or (cluster_cpus(ray) if ray is not None else os.cpu_count() or 1)
        plan = make_plan(
            input, policy=loaded.label, batch_size=batch_size, workers=planned_workers, shard_rows=shard_rows
        )
        plan = store.open(plan, lambda why: print(f"vallum: {why}", file=sys.stderr))
        report.shards = len(plan.shards)
        done = store.done()
        report.resumed = len(done)
        pending = [s for s in plan.shards if s.index not in done]
        rows_done = sum(r.rows for r in done.values())
        if on_progress is not None:
            on_progress(rows_done, plan.rows)
        if pending:
            if ray is None:
                ray = stack.enter_context(ray_running(None, workers))
            size = max(1, min(workers or cluster_cpus(ray), len(pending)))
            report.workers = size
            kwargs = {"policy": loaded, "batch_size": plan.batch_size, "parts": str(store.parts)}
            specs = [shard.to_json() for shard in pending]
            results = stack.enter_context(
                contextlib.closing(map_on_ray(ray, specs, ShardScanner, kwargs, size))
            )
            try:
                for line in results:
                    result = ShardResult.from_json(line)
                    store.record(result)
                    done[result.shard] = result
                    rows_done += result.rows
                    if on_shard is not None:
                        on_shard(result)
                    if on_progress is not None:
                        on_progress(rows_done, plan.rows)
            except RayScanError as exc:
                raise RayScanError(
                    f"{exc}; the shards finished so far are kept in {store.root}: run the same command "
                    "again to resume"
                ) from exc.__cause__
        for shard in plan.shards:
            _add(report, done[shard.index])
        store.finish(plan)
    report.seconds = time.perf_counter() - started
    return report


def _add(report: RayScanReport, result: ShardResult) -> None:
    report.rows += result.rows
    report.scanned += result.scanned
    report.invalid.extend(result.invalid)
    for action, n in result.actions.items():
        report.actions[action] = report.actions.get(action, 0) + n


@contextlib.contextmanager
def ray_running(address: str | None, workers: int | None) -> Iterator[Any]:
    """Ray as this process finds it (initialised: used as it is), or connected to `address`, or a local
    instance of `workers` CPUs started here; what was started here is shut down on the way out."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(
            address=address,
            num_cpus=workers if address is None else None,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the cluster at {address}" if address else "a local Ray instance"
        raise RayUnavailableError(f"cannot start or reach {where}: {_root_cause(exc)}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def map_on_ray(
    ray: Any, items: list[str], worker: type, kwargs: dict[str, Any], size: int
) -> Generator[str, None, None]:
    """Each item's result as it finishes (in no set order), from a pool of `size` actors of `worker`.

    The generic part of the engine, for any per-item job (a shard of rows here; files of a corpus or model
    files later): `worker(**kwargs)` is built once per actor, then called with batches {"item": [one item]}
    and returns {"result": [one JSON string]}.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # vallum reports progress itself; Ray's bars would interleave
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    dataset = ray.data.from_items([{"item": item} for item in items], override_num_blocks=len(items))
    mapped = dataset.map_batches(
        worker,
        fn_constructor_kwargs=kwargs,
        batch_size=1,
        batch_format="numpy",
        # One item running and one queued per actor: no actor waits, none hoards items at the end.
        compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2),
        num_cpus=1,
    )
    try:
        for row in mapped.iter_rows():
            yield str(row["result"])
    except ray.exceptions.RayError as exc:
        raise RayScanError(f"a Ray worker failed ({_root_cause(exc)})") from exc


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)): (.+)$", re.MULTILINE)


def _root_cause(exc: BaseException) -> str:
    """The first cause Ray's wrappers carry, often only as traceback text (a worker's exception, a refused
    connection's reason): the deepest exception in the chain, and in a chained traceback the innermost
    exception's line, which is printed first."""
    chain = [exc]
    while len(chain) < 10:
        cause = chain[-1].__cause__ or getattr(chain[-1], "cause", None)
        if not isinstance(cause, BaseException) or cause in chain:
            break
        chain.append(cause)
    for error in reversed(chain):
        match = _EXCEPTION_LINE.search(str(error))
        if match is not None:
            return f"{match.group(1)}: {match.group(2)}"
    first = (str(chain[-1]).strip().splitlines() or [""])[0]
    return f"{type(chain[-1]).__name__}: {first}"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data is the [data] extra; plain `ray` lacks its dependencies
    except ImportError as exc:
        raise RayUnavailableError(f"the ray engine needs Ray Data: {INSTALL_HINT} ({exc})") from exc
    return ray


def _progress_reporter(input: Path) -> Progress:
    """A tqdm bar of rows on a terminal; elsewhere a line every 30 s and one at the end."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar: Any = None

        def on_tty(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, initial=done, unit="rows", unit_scale=True, desc="scanning")
            else:
                bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return on_tty

    last = 0.0

    def on_log(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _LOG_EVERY_S or done >= total:
            last = now
            share = 100.0 * done / total if total else 100.0
            print(f"vallum: {input}: {done} of {total} rows scanned ({share:.0f}%)", file=sys.stderr)

    return on_log
