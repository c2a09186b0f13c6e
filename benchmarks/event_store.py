"""How many events per second the event store sustains, what the request path pays per event, and how many
events a crash loses.

    python benchmarks/event_store.py                       # SQLite, and PostgreSQL when reachable
    python benchmarks/event_store.py --events 20000 --postgres postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/event_store.py --no-postgres

Throughput: StoreSink in back-pressure mode (so nothing is dropped) takes `--events` gateway-shaped
events (about 1.3 KB of JSON each, a third of them with findings; every one with input and output text)
as fast as one thread can emit them, and the clock stops when close() has committed the last one. Text
mode "none" stores findings only; "encrypted" also seals the texts with AES-256-GCM per row. Runs with and
without the spool (the journal the gateway keeps by default).

Request-path cost: the time one emit() takes (queue large enough that nothing waits or drops, the writer
thread busy at the same time, as in the gateway), with and without the spool, and the spool's own work
(encode, append) without a writer thread competing for the interpreter; medians of five runs.

Crash loss: a child process emits as fast as it can and counts, in shared memory, every event that emit()
accepted; after `--crash-seconds` the parent SIGKILLs it, counts the rows that reached the database, then
starts a sink on the same spool (as a restarted gateway does), which replays the journal, and counts again.
Without a spool what is lost is what sat in the queue plus the batch being written, so that is reported for
the default queue (10,000), for a queue as small as one batch, and for a paced producer (a load the store
keeps up with, as in normal operation); with the spool (the gateway's default) for the default queue, flat
out and paced; next to the batch size.

SQLite is a file in a temporary directory; PostgreSQL gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from vallum.monitor.database import make_engine, upgrade
from vallum.monitor.encryption import ENV_VAR
from vallum.monitor.rows import TextMode
from vallum.monitor.schema import events
from vallum.monitor.spool import Spool
from vallum.monitor.store import EventStore
from vallum.monitor.writer import StoreSink

TARGET_EVENTS_PER_S = 5_000
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BATCH_SIZE = 500

PROMPT = (
    "Summarise the attached quarterly report for the board in five bullet points, keeping the figures "
    "for revenue, churn and hiring, and flag anything that looks inconsistent with last quarter's plan. "
    "Use plain language and keep each bullet under twenty words. "
)
ANSWER = (
    "Revenue grew 8% on the quarter, ahead of plan. Churn fell to 2.1%. Hiring is behind by six roles, "
    "mostly in support. Cash runway is unchanged at 22 months. One inconsistency: marketing spend is "
    "reported twice in the appendix. "
)


def gateway_event(n: int) -> dict[str, Any]:
    """An event as the gateway emits it; every third one blocked with findings."""
    blocked = n % 3 == 0
    findings = (
        [
            {
                "detector": "injection_signatures",
                "category": "injection",
                "subtype": "ignore_previous",
                "rule_id": "VAL-INJ-0012",
                "severity": "critical",
                "score": 0.91,
                "span": [0, 34],
                "where": "messages[1].content",
            },
            {
                "detector": "secrets",
                "category": "secrets",
                "subtype": "aws_access_key_id",
                "rule_id": "VAL-SEC-0001",
                "severity": "error",
                "score": 0.85,
                "span": [110, 130],
                "where": "messages[1].content",
            },
        ]
        if blocked
        else []
    )
    return {
        "id": uuid.uuid4().hex,
        "time": time.time(),
        "api": "openai",
        "route": "chat/completions",
        "model": "sim-echo",
        "upstream": "default",
        "identity": {
            "tenant": "acme",
            "user": f"user{n % 500}",
            "api_key": f"team-{n % 7}",
            "ip": "10.1.2.3",
        },
        "stream": n % 2 == 0,
        "shadow": False,
        "status": 400 if blocked else 200,
        "code": "input_blocked" if blocked else None,
        "policy_version": "default@52fffbb37359",
        "input": {
            "action": "block" if blocked else "allow",
            "categories": ["injection", "secrets"] if blocked else [],
            "scores": {"injection": 0.91, "secrets": 0.85} if blocked else {"injection": 0.02},
            "findings": findings,
            "guard_ms": 1.8,
            "fingerprint": f"{n * 2654435761 % 2**64:016x}",
            "texts": [{"where": "messages[1].content", "text": PROMPT}],
        },
        "output": {
            "action": "allow",
            "categories": [],
            "scores": {},
            "findings": [],
            "guard_ms": 0.7,
            "texts": [] if blocked else [{"where": "choices[0].message.content", "text": ANSWER}],
        },
        "tokens": 0 if blocked else 57,
        "latency_ms": {
            "guard": 2.5,
            "upstream": 0.0 if blocked else 212.4,
            "total": 3.1 if blocked else 216.0,
        },
    }


# ---- databases --------------------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vallum-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'events.db'}"
        upgrade(url)
        yield url


@contextmanager
def postgres_database(base: str) -> Iterator[str]:
    schema = f"vallum_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def count_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(events)).scalar_one())
    finally:
        engine.dispose()


def reachable(url: str) -> bool:
    engine = make_engine(url)
    try:
        with engine.connect():
            return True
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


# ---- throughput -------------------------------------------------------------------------------------------


@dataclass
class Throughput:
    backend: str
    text_mode: str
    events: int
    seconds: float
    rows: int
    dropped: int

    @property
    def per_second(self) -> float:
        return self.events / self.seconds


def measure_throughput(backend: str, url: str, text_mode: TextMode, n: int, spooled: bool) -> Throughput:
    prepared = [gateway_event(i) for i in range(n)]  # built beforehand: the clock is for the store
    with tempfile.TemporaryDirectory(prefix="vallum-spool-") as spool:
        sink = StoreSink(
            EventStore(url, text_mode=text_mode),
            overflow="block",
            block_timeout_s=60.0,
            spool=Path(spool) if spooled else None,
        )
        started = time.perf_counter()
        for event in prepared:
            sink.emit(event)
        sink.close()
        seconds = time.perf_counter() - started
    return Throughput(
        backend, text_mode + (" + spool" if spooled else ""), n, seconds, count_rows(url), sink.dropped
    )


# ---- request-path cost ------------------------------------------------------------------------------------


def emit_cost_us(url: str, spooled: bool, n: int = 20_000, runs: int = 5) -> float:
    """Median microseconds one emit() takes while the writer works beside it."""
    per_event = []
    for _ in range(runs):
        prepared = [gateway_event(i) for i in range(n)]
        with tempfile.TemporaryDirectory(prefix="vallum-spool-") as spool:
            sink = StoreSink(EventStore(url), queue_size=n, spool=Path(spool) if spooled else None)
            started = time.perf_counter()
            for event in prepared:
                sink.emit(event)
            per_event.append((time.perf_counter() - started) / n * 1e6)
            sink.close()
            assert sink.dropped == 0
    return statistics.median(per_event)


def spool_append_us(n: int = 20_000, runs: int = 5) -> float:
    """Median microseconds the spool adds to one emit() by itself (encode, append, a write per 500 events),
    with no writer thread competing for the interpreter."""
    per_event = []
    for _ in range(runs):
        prepared = [gateway_event(i) for i in range(n)]
        with tempfile.TemporaryDirectory(prefix="vallum-spool-") as directory:
            spool = Spool(Path(directory), segment_events=n)
            started = time.perf_counter()
            for event in prepared:
                line = spool.encode(event)
                assert line is not None
                spool.append(line)
            per_event.append((time.perf_counter() - started) / n * 1e6)
            spool.close()
    return statistics.median(per_event)


# ---- crash loss -------------------------------------------------------------------------------------------


@dataclass
class CrashLoss:
    backend: str
    regime: str
    queue_size: int
    spooled: bool
    handed: int
    rows_at_kill: int
    rows: int  # after the restart (the same as rows_at_kill without a spool)

    @property
    def lost(self) -> int:
        return self.handed - self.rows


def _crash_child(
    url: str, queue_size: int, rate: float | None, spool: str | None, handed: Any, ready: Any
) -> None:
    sink = StoreSink(
        EventStore(url),
        queue_size=queue_size,
        batch_size=BATCH_SIZE,
        overflow="block",
        spool=Path(spool) if spool else None,
    )
    template = gateway_event(1)
    ready.set()
    n = 0
    started = time.perf_counter()
    while True:
        if rate is not None:
            wait = started + n / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        sink.emit({**template, "id": uuid.uuid4().hex, "time": time.time()})
        n += 1
        handed.value = n  # only after emit returned: the sink has accepted it


def measure_crash_loss(
    backend: str, url: str, queue_size: int, rate: float | None, seconds: float, spooled: bool
) -> CrashLoss:
    context = multiprocessing.get_context("spawn")
    handed = context.Value("q", 0, lock=False)
    ready = context.Event()
    with tempfile.TemporaryDirectory(prefix="vallum-spool-") as spool:
        child = context.Process(
            target=_crash_child,
            args=(url, queue_size, rate, spool if spooled else None, handed, ready),
            daemon=True,
        )
        child.start()
        ready.wait(60)
        time.sleep(seconds)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        at_kill = count_rows(url)
        if spooled:  # the restart: a new sink on the same spool replays what the dead one journaled
            StoreSink(EventStore(url), batch_size=BATCH_SIZE, spool=Path(spool)).close()
    regime = "flat out" if rate is None else f"paced {rate:,.0f}/s"
    return CrashLoss(backend, regime, queue_size, spooled, int(handed.value), at_kill, count_rows(url))


# ---- main -------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000, help="events per throughput run")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL URL (used when reachable)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument(
        "--crash-seconds", type=float, default=2.0, help="how long the child runs before SIGKILL"
    )
    parser.add_argument("--paced-rate", type=float, default=2_000.0, help="events/s of the paced crash run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    os.environ.setdefault(ENV_VAR, "bench:" + base64.b64encode(os.urandom(32)).decode())
    backends: list[tuple[str, Any]] = [("sqlite", sqlite_database)]
    if not args.no_postgres:
        if reachable(args.postgres):
            backends.append(("postgresql", lambda: postgres_database(args.postgres)))
        else:
            print(f"PostgreSQL not reachable at {args.postgres}: SQLite only", file=sys.stderr)

    sample = json.dumps(gateway_event(0)), json.dumps(gateway_event(1))
    print(f"event size: {len(sample[0])} B (blocked, with findings), {len(sample[1])} B (allowed) as JSON")
    print(
        f"batch size {BATCH_SIZE}, queue 10,000, writer waits up to 50 ms for a batch to fill; {os.cpu_count()} CPUs\n"
    )

    results: list[Throughput] = []
    for backend, database in backends:
        runs: tuple[tuple[TextMode, bool], ...] = (("none", False), ("none", True), ("encrypted", True))
        for mode, spooled in runs:
            with database() as url:
                results.append(measure_throughput(backend, url, mode, args.events, spooled))
    print(
        f"{'backend':<11} {'text':<18} {'events':>8} {'seconds':>8} {'events/s':>9} {'rows':>8} {'dropped':>8}  target"
    )
    for r in results:
        verdict = "ok" if r.per_second >= TARGET_EVENTS_PER_S and r.rows == r.events else "MISSED"
        print(
            f"{r.backend:<11} {r.text_mode:<18} {r.events:>8} {r.seconds:>8.2f} {r.per_second:>9,.0f} "
            f"{r.rows:>8} {r.dropped:>8}  >= {TARGET_EVENTS_PER_S:,}/s {verdict}"
        )

    with sqlite_database() as url:
        costs = {spooled: emit_cost_us(url, spooled) for spooled in (False, True)}
    alone = spool_append_us()
    print(
        f"\nemit() on the request path (SQLite writer busy beside it): {costs[False]:.1f} us without the spool, "
        f"{costs[True]:.1f} us with it; the spool's own work, without a writer thread: {alone:.1f} us "
        "(medians of 5 runs of 20,000 events)"
    )

    losses: list[CrashLoss] = []
    regimes = (
        (10_000, None, False),
        (BATCH_SIZE, None, False),
        (10_000, args.paced_rate, False),
        (10_000, None, True),
        (10_000, args.paced_rate, True),
    )
    for backend, database in backends:
        for queue_size, rate, spooled in regimes:
            with database() as url:
                losses.append(measure_crash_loss(backend, url, queue_size, rate, args.crash_seconds, spooled))
    print(f"\nSIGKILL after {args.crash_seconds:.1f} s; batch size {BATCH_SIZE}")
    print(
        f"{'backend':<11} {'producer':<14} {'queue':>6} {'spool':>5} {'handed':>8} {'at kill':>8} "
        f"{'restart':>8} {'lost':>6} {'lost/batch':>10}"
    )
    for c in losses:
        print(
            f"{c.backend:<11} {c.regime:<14} {c.queue_size:>6} {'on' if c.spooled else 'off':>5} {c.handed:>8} "
            f"{c.rows_at_kill:>8} {c.rows:>8} {c.lost:>6} {c.lost / BATCH_SIZE:>10.2f}"
        )

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "throughput": [{**r.__dict__, "per_second": r.per_second} for r in results],
                    "emit_us": {"spool_off": costs[False], "spool_on": costs[True], "spool_alone": alone},
                    "crash_loss": [{**c.__dict__, "lost": c.lost, "batch_size": BATCH_SIZE} for c in losses],
                },
                indent=2,
            )
        )
    return 0 if all(r.per_second >= TARGET_EVENTS_PER_S and r.rows == r.events for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
