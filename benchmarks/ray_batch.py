"""Batch scans on Ray against the local engine: throughput with 1 and 2 workers, and where Ray pays off.

    python benchmarks/ray_batch.py                          # 100,000 rows; crossover from 1k, 4k, 16k rows
    python benchmarks/ray_batch.py --rows 20000 --sizes 1000,4000
    python benchmarks/ray_batch.py --repeat 3                # on a busy machine: the fastest of 3 runs

Rows are the texts of ../shared/data/train/*.jsonl, shuffled once (seed 0) and cycled until there are
enough, as {"id", "text"} lines, so every prefix has the same mix of short benign prompts and long
jailbreak templates. Each engine scans the same file with the default policy:

- local: `vallum scan --input --output` in this process (Guard load, read, scan, write).
- ray: `run_ray_scan` on a local Ray instance of 2 CPUs that is already running ("warm", as a cluster
  you connect to with --address would be): planning, actor start (each loads its Guard), scanning,
  writing the shards and joining them. "cold" adds the instance's start (`ray.init`), measured once.

Every Ray output is checked byte for byte against the local engine's. The crossover is where the fitted
lines t = overhead + rows / throughput of the local engine and of Ray with 2 workers cross. Timings on a
shared machine move with its load: the "CPU wait" column is the share of each run's wall time in which some
task on the machine waited for a CPU (Linux pressure stall information); a run with much more than the
others was disturbed by someone else's work. With --repeat N each measurement runs N times, the engines
taking turns, and the fastest run counts (the one least disturbed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def make_rows(count: int, path: Path) -> None:
    pool: list[str] = []
    for file in sorted(DATA.glob("*.jsonl")):
        with file.open(encoding="utf-8") as f:
            pool.extend(json.loads(line)["text"] for line in f if line.strip())
    random.Random(0).shuffle(pool)
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            out.write(json.dumps({"id": i, "text": pool[i % len(pool)]}, ensure_ascii=False) + "\n")


def prefix(source: Path, rows: int, path: Path) -> Path:
    with source.open("rb") as f, path.open("wb") as out:
        for _, line in zip(range(rows), f, strict=False):
            out.write(line)
    return path


def cpu_wait_us() -> int | None:
    """Microseconds in which some task waited for a CPU, since boot (None where PSI is unavailable)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return int(first.rsplit("total=", 1)[1])


def measured(run: Callable[..., float], *args: Any) -> tuple[float, float | None]:
    """`run(*args)`'s seconds, and the share of them in which some task waited for a CPU."""
    before = cpu_wait_us()
    seconds = run(*args)
    after = cpu_wait_us()
    return seconds, None if before is None or after is None else (after - before) / 1e6 / seconds


def run_local(source: Path, output: Path) -> float:
    from vallum.cli import main

    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(["scan", "--input", str(source), "--output", str(output), "--no-progress"])
    if code != 0:
        raise SystemExit(f"local scan of {source} exited {code}")
    return time.perf_counter() - started


def run_ray(source: Path, output: Path, workers: int, reference: Path) -> float:
    from vallum.batch_ray import run_ray_scan

    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        code = run_ray_scan(source, output, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"ray scan of {source} exited {code}")
    if output.read_bytes() != reference.read_bytes():
        raise SystemExit(f"ray output for {source} differs from the local engine's")
    return seconds


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares t = a + b * rows: (overhead a in seconds, seconds per row b)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    b = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx if sxx else 0.0
    return mean_y - b * mean_x, b


def crossover(local: tuple[float, float], ray: tuple[float, float], extra_overhead: float = 0.0) -> str:
    (a_local, b_local), (a_ray, b_ray) = local, ray
    if b_ray >= b_local:
        return "never (Ray is not faster per row here)"
    rows = (a_ray + extra_overhead - a_local) / (b_local - b_ray)
    return f"{max(0.0, rows):,.0f} rows"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sizes", default="1000,4000,16000", help="smaller sizes for the crossover")
    parser.add_argument("--workers", default="1,2", help="Ray workers to measure at --rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest is reported")
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | {args.rows})
    workers = [int(w) for w in args.workers.split(",") if w]

    import ray

    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results: list[tuple[str, int, int, float, float | None]] = []  # engine, workers, rows, seconds, wait
    with tempfile.TemporaryDirectory(prefix="vallum-ray-bench-") as tmp:
        work = Path(tmp)
        full = work / f"rows-{args.rows}.jsonl"
        make_rows(args.rows, full)
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        init_s = time.perf_counter() - started
        try:
            for size in sizes:
                source = full if size == args.rows else prefix(full, size, work / f"rows-{size}.jsonl")
                reference = work / f"local-{size}.jsonl"
                for _ in range(args.repeat):  # engines take turns, so a burst of load hits both alike
                    seconds, wait = measured(run_local, source, reference)
                    results.append(("local", 1, size, seconds, wait))
                    print(f"local {size:>7} rows: {seconds:8.1f} s", file=sys.stderr)
                    for n in workers if size == args.rows else [max(workers)]:
                        output = work / f"ray-{n}-{size}.jsonl"
                        seconds, wait = measured(run_ray, source, output, n, reference)
                        results.append(("ray", n, size, seconds, wait))
                        print(f"ray/{n} {size:>7} rows: {seconds:8.1f} s", file=sys.stderr)
                        output.unlink()
        finally:
            ray.shutdown()
    load_after = os.getloadavg()[0]
    fastest: dict[tuple[str, int, int], tuple[str, int, int, float, float | None]] = {}
    for result in results:
        key = result[:3]
        if key not in fastest or result[3] < fastest[key][3]:
            fastest[key] = result
    results = list(fastest.values())

    local_at = {rows: s for engine, _, rows, s, _ in results if engine == "local"}
    print(f"\nRay batch scan vs the local engine ({os.cpu_count()} cores; ray.init took {init_s:.1f} s)\n")
    print(f"{'engine':<12} {'rows':>8} {'seconds':>9} {'rows/s':>8} {'vs local':>9} {'CPU wait':>9}")
    for engine, n, rows, seconds, wait in results:
        name = "local" if engine == "local" else f"ray, {n} wkr"
        ratio = local_at[rows] / seconds
        waited = "n/a" if wait is None else f"{100 * wait:.0f}%"
        print(f"{name:<12} {rows:>8,} {seconds:>9.1f} {rows / seconds:>8.0f} {ratio:>8.2f}x {waited:>9}")
    top = max(workers)
    local_fit = fit([(r, s) for e, _, r, s, _ in results if e == "local"])
    ray_fit = fit([(r, s) for e, n, r, s, _ in results if e == "ray" and n == top])
    print(
        f"\nfitted: local {local_fit[0]:.1f} s + {1 / local_fit[1]:.0f} rows/s; "
        f"ray ({top} workers) {ray_fit[0]:.1f} s + {1 / ray_fit[1]:.0f} rows/s"
    )
    print(f"crossover, Ray already running: {crossover(local_fit, ray_fit)}")
    print(f"crossover, Ray started for the scan: {crossover(local_fit, ray_fit, init_s)}")
    print(f"load average after: {load_after:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
