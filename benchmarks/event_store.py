"""How many events per second the event store sustains, and how many a crash loses.

    python benchmarks/event_store.py                       # SQLite, and PostgreSQL when reachable
    python benchmarks/event_store.py --events 20000 --postgres postgresql://postgres@127.0.0.1:5432/test
    python benchmarks/event_store.py --no-postgres

Throughput: StoreSink in back-pressure mode (so nothing is dropped) takes `--events` gateway-shaped
events (about 1 KB of JSON each, a third of them with findings; every one with input and output text)
as fast as one thread can emit them, and the clock stops when close() has committed the last one. Text
mode "none" stores findings only; "encrypted" also seals the texts with AES-256-GCM per row.

Crash loss: a child process emits as fast as it can and counts, in shared memory, every event that emit()
accepted; after `--crash-seconds` the parent SIGKILLs it and counts the rows that reached the database.
What is lost is what sat in the queue plus the batch being written, so it is reported for the default
queue (10,000), for a queue as small as one batch, and for a paced producer (a load the store keeps up
with, as in normal operation), next to the batch size.

SQLite is a file in a temporary directory; PostgreSQL gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import signal
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


def measure_throughput(backend: str, url: str, text_mode: TextMode, n: int) -> Throughput:
    prepared = [gateway_event(i) for i in range(n)]  # built beforehand: the clock is for the store
    sink = StoreSink(EventStore(url, text_mode=text_mode), overflow="block", block_timeout_s=60.0)
    started = time.perf_counter()
    for event in prepared:
        sink.emit(event)
    sink.close()
    seconds = time.perf_counter() - started
    return Throughput(backend, text_mode, n, seconds, count_rows(url), sink.dropped)


# ---- crash loss -------------------------------------------------------------------------------------------


@dataclass
class CrashLoss:
    backend: str
    regime: str
    queue_size: int
    handed: int
    rows: int

    @property
    def lost(self) -> int:
        return self.handed - self.rows


def _crash_child(url: str, queue_size: int, rate: float | None, handed: Any, ready: Any) -> None:
    sink = StoreSink(EventStore(url), queue_size=queue_size, batch_size=BATCH_SIZE, overflow="block")
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
    backend: str, url: str, queue_size: int, rate: float | None, seconds: float
) -> CrashLoss:
    context = multiprocessing.get_context("spawn")
    handed = context.Value("q", 0, lock=False)
    ready = context.Event()
    child = context.Process(target=_crash_child, args=(url, queue_size, rate, handed, ready), daemon=True)
    child.start()
    ready.wait(60)
    time.sleep(seconds)
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    regime = "flat out" if rate is None else f"paced {rate:,.0f}/s"
    return CrashLoss(backend, regime, queue_size, int(handed.value), count_rows(url))


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
        for mode in ("none", "encrypted"):
            with database() as url:
                results.append(measure_throughput(backend, url, mode, args.events))
    print(
        f"{'backend':<11} {'text':<10} {'events':>8} {'seconds':>8} {'events/s':>9} {'rows':>8} {'dropped':>8}  target"
    )
    for r in results:
        verdict = "ok" if r.per_second >= TARGET_EVENTS_PER_S and r.rows == r.events else "MISSED"
        print(
            f"{r.backend:<11} {r.text_mode:<10} {r.events:>8} {r.seconds:>8.2f} {r.per_second:>9,.0f} "
            f"{r.rows:>8} {r.dropped:>8}  >= {TARGET_EVENTS_PER_S:,}/s {verdict}"
        )

    losses: list[CrashLoss] = []
    for backend, database in backends:
        for queue_size, rate in ((10_000, None), (BATCH_SIZE, None), (10_000, args.paced_rate)):
            with database() as url:
                losses.append(measure_crash_loss(backend, url, queue_size, rate, args.crash_seconds))
    print(f"\nSIGKILL after {args.crash_seconds:.1f} s; batch size {BATCH_SIZE}")
    print(
        f"{'backend':<11} {'producer':<14} {'queue':>6} {'handed':>8} {'in DB':>8} {'lost':>6} {'lost/batch':>10}"
    )
    for c in losses:
        print(
            f"{c.backend:<11} {c.regime:<14} {c.queue_size:>6} {c.handed:>8} {c.rows:>8} {c.lost:>6} "
            f"{c.lost / BATCH_SIZE:>10.2f}"
        )

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "throughput": [{**r.__dict__, "per_second": r.per_second} for r in results],
                    "crash_loss": [{**c.__dict__, "lost": c.lost, "batch_size": BATCH_SIZE} for c in losses],
                },
                indent=2,
            )
        )
    return 0 if all(r.per_second >= TARGET_EVENTS_PER_S and r.rows == r.events for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
