"""Gateway throughput and latency with 1 and 2 replicas sharing PostgreSQL and Redis, and what that implies
per core for a larger cluster.

    python benchmarks/gateway_replicas.py                     # 1 and 2 replicas: a latency run and a ramp each
    python benchmarks/gateway_replicas.py --quick             # a smoke run of a few seconds per step
    python benchmarks/gateway_replicas.py --replicas 1,2,4 --ramp-rates 200,400,800,1200 --json out.json

Each run starts N `vallum serve` processes in front of one `vallum upstream-sim`, configured as a scaled-out
deployment is: events into PostgreSQL (a fresh schema, dropped afterwards) and every request through the
shared Redis rate limiter (a limit far above the load, so nothing is refused but every request pays for
the check). The load generator of benchmarks/gateway_overhead.py sends 1 KB benign prompts on a fixed
timetable, round robin over the replicas as a load balancer would (without the balancer's own hop), and
counts latency from each request's scheduled time. Per replica count: a latency run at --rate, then a ramp
that stops at the first step with errors, a p99 above --ramp-p99-ms, or a rate below 95% of the target.

CPU is read from /proc for the replicas, the simulator, this load generator and the machine's PostgreSQL
and Redis processes, so the table shows where each request's CPU goes. The per-core figures at the end are
estimates: requests per second per core of gateway CPU, and how many such requests one core of PostgreSQL
plus Redis absorbs, measured at the highest step every replica count sustained. On a machine with fewer
cores than the processes it runs, two replicas compete with everything else for the same cores; the
per-core figures are what carries over to a larger cluster, not the totals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gateway_overhead import (
    CpuClock,
    Discard,
    Pool,
    chat_body,
    event_loop_runner,
    exchange,
    fmt,
    free_port,
    http_request,
    jsonable,
    launch,
    percentiles_ms,
    prompt_texts,
    step_passes,
    stop,
    wait_ready,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.services import POSTGRES_URL, REDIS_URL, fresh_schema

SERVICES = ("postgres", "redis-server")  # process names whose CPU counts as the shared state's


# ---- the machine's shared services and CPU -------------------------------------------------------------


def service_cpu_seconds() -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL and Redis process (backends come and go per connection)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        if name.startswith(SERVICES):
            fields = stat.rsplit(")", 1)[1].split()
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and I/O wait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Snapshot:
    """CPU seconds used so far by the cluster's processes, the shared services and the whole machine."""

    wall: float
    processes: dict[str, float]
    services: dict[int, float]
    machine: float

    @classmethod
    def take(cls, clock: CpuClock) -> Snapshot:
        return cls(time.perf_counter(), clock.read(), service_cpu_seconds(), machine_busy_seconds())

    def since(self, clock: CpuClock) -> Used:
        now = Snapshot.take(clock)
        cpu = {k: now.processes[k] - self.processes[k] for k in now.processes}
        gateways = sum(v for k, v in cpu.items() if k.startswith("gw"))
        cpu = {k: v for k, v in cpu.items() if not k.startswith("gw")} | {"gateways": gateways}
        cpu["postgres+redis"] = sum(v - self.services.get(pid, 0.0) for pid, v in now.services.items())
        cpu["machine"] = now.machine - self.machine
        return Used(now.wall - self.wall, cpu)


@dataclass
class Used:
    wall: float
    cpu: dict[str, float]


# ---- the replicas ----------------------------------------------------------------------------------------


@dataclass
class Cluster:
    sim: Any
    sim_port: int
    replicas: list[Any]
    ports: list[int]
    logs: list[Path]


@contextmanager
def cluster(count: int, args: argparse.Namespace, workdir: Path) -> Iterator[Cluster]:
    """The simulator and `count` replicas sharing a fresh PostgreSQL schema and Redis; all stopped after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with fresh_schema(args.database_url, "vallum_bench") as database_url:
        env.update(VALLUM_DATABASE_URL=database_url, VALLUM_REDIS_URL=args.redis_url)
        sim_port = free_port()
        upstream = f"http://127.0.0.1:{sim_port}/v1"
        config = workdir / "gateway.yaml"
        config.write_text(
            "drain_s: 1\n"
            f"upstreams: [{{name: sim, base_url: '{upstream}'}}]\n"
            "routes: [{model: '*', upstream: sim}]\n"
            # Every request takes a token from the shared bucket; this many are never refused.
            "default_limits: {requests_per_minute: 1000000000}\n",
            encoding="utf-8",
        )
        vallum = [sys.executable, "-m", "vallum"]
        sim_log = workdir / "sim.log"
        sim = launch([*vallum, "upstream-sim", "--port", str(sim_port)], args.sim_cpus, workdir, sim_log, env)
        replicas, ports, logs = [], [], []
        gateway_cpus = args.gateway_cpus.split(":") if args.gateway_cpus else [None]
        try:
            wait_ready(f"{upstream}/models", sim, sim_log)
            for i in range(count):
                home = workdir / f"replica-{i + 1}"  # its own directory, as on its own host
                home.mkdir(exist_ok=True)
                port = free_port()
                command = [*vallum, "serve", "--config", str(config), "--port", str(port)]
                log = home / "gateway.log"
                replicas.append(launch(command, gateway_cpus[i % len(gateway_cpus)], home, log, env))
                ports.append(port)
                logs.append(log)
            for process, port, log in zip(replicas, ports, logs, strict=True):
                wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
            yield Cluster(sim, sim_port, replicas, ports, logs)
        finally:
            for process in replicas:
                stop(process)
            stop(sim)


# ---- load, round robin over the replicas -----------------------------------------------------------------


async def balanced_load(
    ports: Sequence[int],
    requests: dict[int, list[bytes]],
    rate: float,
    seconds: float,
    clock: CpuClock,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """`rate` requests a second on one fixed timetable, request i to replica i mod N; latency from the
    scheduled time. Returns the figures step_passes() and the tables read."""
    warm = int(rate * args.warmup)
    total = warm + max(1, int(rate * seconds))
    due, end = np.full(total, np.nan), np.full(total, np.nan)
    ok = np.zeros(total, dtype=bool)
    errors: dict[str, int] = {}
    pools = [Pool(port, args.connections) for port in ports]

    async def one(i: int) -> None:
        port_index = i % len(ports)
        batch = requests[ports[port_index]]
        failure = None
        try:
            async with asyncio.timeout(args.timeout):
                status = await exchange(pools[port_index], batch[i % len(batch)], Discard())
            end[i] = time.perf_counter()
            if status != 200:
                failure = f"http_{status}"
        except TimeoutError:
            failure = "timeout"
        except Exception as exc:
            failure = type(exc).__name__
        if failure is None:
            ok[i] = True
        elif i >= warm:
            errors[failure] = errors.get(failure, 0) + 1

    pending: set[asyncio.Task[None]] = set()
    measuring: Snapshot | None = None
    t0 = time.perf_counter() + 0.05
    for i in range(total):
        due[i] = t0 + i / rate
        if (delay := due[i] - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        if i == warm:
            measuring = Snapshot.take(clock)  # the warm-up is sent, not measured
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    assert measuring is not None
    used = measuring.since(clock)
    for pool in pools:
        pool.close()
    measured = slice(warm, total)
    good = int(ok[measured].sum())
    latency = np.where(ok[measured], end[measured] - due[measured], np.nan)
    finished = due[measured] + latency
    span = float(np.nanmax(finished) - due[measured][0]) if good else float("nan")
    sent = total - warm
    return {
        "rate": rate,
        "sent": sent,
        "ok": good,
        "errors": sent - good,
        "error_kinds": errors,
        "achieved_rps": good / span if good else 0.0,
        "latency_ms": percentiles_ms(latency),
        # CPU of the measured part, per request sent and as cores busy over its wall time
        "cpu_ms_per_request": {k: 1e3 * v / sent for k, v in used.cpu.items()},
        "cores": {k: v / used.wall for k, v in used.cpu.items()},
    }


# ---- phases and tables -----------------------------------------------------------------------------------

HEAD = (
    f"{'replicas':>8} {'target/s':>8} {'rate/s':>8} {'err':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
    f"{'gw cores':>8} {'db cores':>8} {'gw ms/req':>9} {'db ms/req':>9} {'all cores':>9}  step"
)


def row(replicas: int, r: dict[str, Any], verdict: str) -> str:
    q, cores, ms = r["latency_ms"], r["cores"], r["cpu_ms_per_request"]
    return (
        f"{replicas:>8} {r['rate']:>8.0f} {r['achieved_rps']:>8.1f} {r['errors']:>5} {fmt(q['p50'])} "
        f"{fmt(q['p90'])} {fmt(q['p99'])} {fmt(cores['gateways'])} {fmt(cores['postgres+redis'])} "
        f"{fmt(ms['gateways'], 9)} {fmt(ms['postgres+redis'], 9)} {fmt(cores['machine'], 9)}  {verdict}"
        + (f" {r['error_kinds']}" if r["error_kinds"] else "")
    )


async def measure(
    replicas: int, ports: list[int], clock: CpuClock, args: argparse.Namespace
) -> dict[str, Any]:
    texts = prompt_texts(args.prompts, args.prompt_chars)
    requests = {port: [http_request(port, chat_body(t, False, None)) for t in texts] for port in ports}
    for port in ports:  # each replica answers, and passes a benign prompt unchanged
        pool = Pool(port, 1)
        status = await exchange(pool, requests[port][0], Discard())
        pool.close()
        if status != 200:
            raise SystemExit(f"replica on port {port} answered HTTP {status} to a benign prompt")
    latency = await balanced_load(ports, requests, args.rate, args.seconds, clock, args)
    print(row(replicas, latency, "latency run"))
    await asyncio.sleep(args.settle)
    steps, sustained = [], None
    for rate in args.ramp_rates:
        result = await balanced_load(ports, requests, rate, args.ramp_seconds, clock, args)
        passed = step_passes(result, rate, args.ramp_p99_ms)
        steps.append({**result, "passed": passed})
        print(row(replicas, result, "ok" if passed else "FAIL"))
        await asyncio.sleep(args.settle)
        if not passed:
            break
        sustained = result
    return {"latency": latency, "ramp": steps, "sustained": sustained}


def estimates(results: dict[int, dict[str, Any]]) -> list[str]:
    """Per-core figures at the highest step each replica count sustained; stated as estimates."""
    lines = []
    for replicas, result in results.items():
        top = result["sustained"]
        if top is None:
            lines.append(f"{replicas} replica(s): no ramp step passed; no per-core estimate")
            continue
        gw_ms, db_ms = top["cpu_ms_per_request"]["gateways"], top["cpu_ms_per_request"]["postgres+redis"]
        per_gw_core = 1e3 / gw_ms if gw_ms > 0 else float("nan")
        per_db_core = 1e3 / db_ms if db_ms > 0 else float("nan")
        lines.append(
            f"{replicas} replica(s): sustained {top['achieved_rps']:.0f} req/s (p99 "
            f"{top['latency_ms']['p99']:.1f} ms); gateway CPU {gw_ms:.2f} ms/request, so about "
            f"{per_gw_core:.0f} req/s per gateway core; PostgreSQL+Redis {db_ms:.2f} ms/request, so one core "
            f"of them serves about {per_db_core:.0f} req/s"
        )
    if results:
        best = [r["sustained"] for r in results.values() if r["sustained"] is not None]
        if best:
            gw_ms = float(np.mean([b["cpu_ms_per_request"]["gateways"] for b in best]))
            db_ms = float(np.mean([b["cpu_ms_per_request"]["postgres+redis"] for b in best]))
            lines.append(
                f"estimate for a larger cluster: gateway replicas scale with cores at about {1e3 / gw_ms:.0f} "
                f"req/s per core (e.g. {16e3 / gw_ms:.0f} req/s on 16 cores), as long as PostgreSQL and "
                f"Redis keep up: about {gw_ms / db_ms:.1f} gateway cores per core of theirs at this load "
                "(an extrapolation from this machine, not a measurement of a cluster)"
                if db_ms > 0
                else f"estimate: about {1e3 / gw_ms:.0f} req/s per gateway core (extrapolated, not measured)"
            )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", default="1,2", help="replica counts to measure, in turn")
    p.add_argument("--rate", type=float, default=100, help="the latency run's rate, requests/s")
    p.add_argument("--seconds", type=float, default=15, help="the latency run's length")
    p.add_argument(
        "--ramp-rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[100, 200, 300, 400, 600, 800, 1000],
    )
    p.add_argument("--ramp-seconds", type=float, default=10)
    p.add_argument("--ramp-p99-ms", type=float, default=1000, help="a ramp step fails above this p99")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load sent before each measured run")
    p.add_argument("--settle", type=float, default=1, help="pause between runs, seconds")
    p.add_argument("--timeout", type=float, default=10, help="per-request timeout, seconds")
    p.add_argument("--connections", type=int, default=256, help="most keep-alive connections per replica")
    p.add_argument("--prompt-chars", type=int, default=1000)
    p.add_argument("--prompts", type=int, default=512, help="distinct prompts, cycled")
    p.add_argument("--database-url", default=POSTGRES_URL, help="PostgreSQL the replicas share")
    p.add_argument("--redis-url", default=REDIS_URL, help="Redis the replicas share")
    p.add_argument("--gateway-cpus", help="taskset CPU lists for the replicas, ':'-separated, used in turn")
    p.add_argument("--sim-cpus", help="taskset CPU list for the simulator")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds per step")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.ramp_seconds, args.ramp_rates = 3, 2, [100, 300]
        args.warmup, args.settle, args.prompts = 0.5, 0.3, 64
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    counts = [int(n) for n in args.replicas.split(",") if n]
    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        f"prompts of {args.prompt_chars} characters; latency from the scheduled send time; 'cores' = CPU "
        "seconds per wall second (gw: all replicas, db: PostgreSQL + Redis, all: the whole machine)"
    )
    print(HEAD)
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vallum-replicas-") as tmp:
        for count in counts:
            workdir = Path(tmp) / f"{count}-replicas"
            workdir.mkdir()
            with cluster(count, args, workdir) as running:
                pids = {f"gw{i + 1}": p.pid for i, p in enumerate(running.replicas)} | {
                    "sim": running.sim.pid
                }
                with event_loop_runner() as runner:
                    results[count] = runner.run(measure(count, running.ports, CpuClock(pids), args))
    print()
    for line in estimates(results):
        print(line)
    if args.json:
        meta = {
            "cpus": os.cpu_count(),
            "load_average": load,
            "options": vars(args) | {"json": str(args.json)},
        }
        args.json.write_text(json.dumps(jsonable({"meta": meta, "results": results}), indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
