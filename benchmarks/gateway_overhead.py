"""What the gateway adds to a request: latency, time to first streamed token, throughput and memory.

    python benchmarks/gateway_overhead.py                  # about 4 minutes; prints a table per phase
    python benchmarks/gateway_overhead.py --quick          # a smoke run, under a minute
    python benchmarks/gateway_overhead.py --soak-seconds 600 --json gateway_overhead.json

The same open-loop load (1 KB chat prompts of benign prose, sent on a fixed timetable) goes straight to
`vallum upstream-sim` and through `vallum serve` in front of it, back to back, so the difference is the
gateway's cost: its HTTP hop, the Guard over the prompt and over the echoed answer, and its event log.
Latency runs from each request's *scheduled* send time, so a server that falls behind shows up as
queueing instead of quietly slowing the load down (coordinated omission).

Phases: non-streaming at a fixed rate; streaming at a lower rate (time to first content token); a rate
ramp through the gateway until a step fails; optionally a soak that samples the gateway's RSS. The
gateway gets a core of its own (taskset); the simulator and this load generator share the other, and the
direct-to-simulator rows show that they keep up at every rate used.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

# ---- targets (from the issue) ---------------------------------------------------------------------------

TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
TARGET_SUSTAINED_RPS = 500.0
TARGET_ADDED_TTFT_MS = 3.0

# ---- the prompts -----------------------------------------------------------------------------------------

# Benign prose only: nothing that reads as an instruction to the model, no names, numbers or secrets, so
# the Guard allows every request and the echoed answer unchanged (the sanity check verifies that).
PARAGRAPHS = (
    "The allotment behind the old station was quiet this morning. Dew still covered the cabbages, and "
    "the bean poles leaned a little after the wind of the past week. A blackbird worked its way along "
    "the edge of the path, turning over leaves in search of worms and beetles.",
    "Baking bread at home takes patience more than skill. The dough needs time to rise in a warm "
    "corner, and the loaf tastes better when it has cooled on a rack before anyone cuts into it. A "
    "little rye flour gives the crust a deeper colour and a pleasant sour note.",
    "Our cycling club rode along the canal towpath on Sunday. The surface was firm after a dry spell, "
    "and the herons stood so still in the reeds that they looked like carved wood. We stopped at a lock "
    "keeper's cottage where tea and scones were served from a hatch in the wall.",
    "The river changes character over its length. High in the hills it is narrow and fast, tumbling "
    "over stones; in the valley it widens and slows, wandering in loops across the meadows before it "
    "reaches the estuary, where mud flats shine at low tide and wading birds gather.",
    "The village library moved into the former school last spring. The children's corner now has a "
    "reading den made from an old rowing boat, and the shelves of local history have grown thanks to "
    "families who lent their letters, photographs and parish magazines.",
    "Woodworking teaches you to read the grain. A plane pushed the wrong way tears the surface, while "
    "the right direction leaves a sheen that needs no sanding at all. Oak is slow to work but rewards "
    "the effort; pine is forgiving and smells wonderful on a summer afternoon.",
    "Autumn brought the first redwings to the hawthorn hedge. They arrive at night and announce "
    "themselves with a thin call overhead, then strip the berries over a few days before moving on to "
    "the orchards, where windfall apples keep them busy until the frost.",
    "Green tea should never be brewed with water straight from the boil. Letting the kettle rest for a "
    "few minutes keeps the leaves from turning bitter, and a second steeping often tastes sweeter than "
    "the first. Small cups encourage slow drinking and good conversation.",
    "The coastal walk starts at the harbour and climbs steadily to the headland. On a clear day you can "
    "see the islands to the west and the long curve of the bay to the south. Sea pinks grow in the "
    "cracks of the cliff path, and gannets dive offshore like falling arrows.",
    "Old maps are as much about the people who drew them as about the land. Blank spaces were filled "
    "with sea monsters and ornate compass roses, and rivers sometimes ran in directions that no "
    "traveller had ever checked, copied faithfully from one chart to the next.",
    "Learning the cello as an adult is humbling. The bow wanders towards the fingerboard, the left hand "
    "forgets where the notes live, and yet a single clear phrase at the end of a practice session is "
    "enough to make the whole evening feel worthwhile.",
    "The pottery studio smells of wet clay and wood smoke from the kiln. Beginners learn to centre the "
    "clay on the wheel before anything else, and most of their first bowls collapse. The teacher keeps "
    "a shelf of lopsided early pieces to show that everyone starts the same way.",
    "The lighthouse on the point was built from granite blocks carried by boat from a quarry along the "
    "coast. Its lamp is automated now, but the keepers' cottages remain, and one of them has become a "
    "small museum with logbooks, brass fittings and a great glass lens.",
    "In the orchard the apple blossom came late this year. The bees were slow to start because of the "
    "cold evenings, but by the end of the month the trees hummed from morning until dusk, and the grass "
    "beneath them was white with fallen petals.",
    "Stargazing is best away from town lights on a moonless night. Once your eyes adjust, the faint band "
    "of the galaxy appears across the sky, and a simple pair of binoculars reveals star clusters, the "
    "moons of the giant planets and the soft glow of a distant nebula.",
    "The market square fills early on Saturdays. Farmers bring crates of leeks and potatoes, a cheese "
    "maker sets out wheels on a wooden board, and the smell of roasting chestnuts drifts from a cart by "
    "the fountain while the church bells ring the hour.",
)
OPENERS = (
    "Here is a short piece I wrote for our community newsletter.",
    "I am putting together a few notes for a weekend walking group.",
    "This is a draft for a blog about simple pleasures.",
    "Below is some text from my travel journal.",
    "I wrote these paragraphs for a writing class.",
    "A friend asked me to share what I noticed this season.",
    "These are notes I want to tidy up before sending them to my family.",
    "I have been collecting observations for a small book.",
)
CLOSERS = (
    "Could you suggest a good title for it?",
    "Please summarise it in two sentences.",
    "What would be a friendly way to end this piece?",
    "Can you point out any sentences that feel too long?",
    "Which part would make the best opening line?",
    "How could I make the tone a little warmer?",
    "Would this suit readers who are new to the subject?",
    "What photograph would go well with this text?",
)


def prompt_texts(count: int, size: int) -> list[str]:
    """`count` distinct prompts of about `size` characters, fixed by their index (so runs are repeatable
    and no two nearby requests carry the same text)."""
    texts = []
    strides = [s for s in range(1, len(PARAGRAPHS)) if math.gcd(s, len(PARAGRAPHS)) == 1]
    for i in range(count):
        opener, closer = OPENERS[i % len(OPENERS)], CLOSERS[(i // len(OPENERS)) % len(CLOSERS)]
        start = (i // 64) % len(PARAGRAPHS)
        stride = strides[(i // (64 * len(PARAGRAPHS))) % len(strides)]
        order = [PARAGRAPHS[(start + k * stride) % len(PARAGRAPHS)] for k in range(len(PARAGRAPHS))]
        budget = size - len(opener) - len(closer) - 2
        body = " ".join(order)[:budget].rsplit(" ", 1)[0].rstrip(",;") + "."
        texts.append(f"{opener} {body} {closer}")
    return texts


def chat_body(text: str, stream: bool, chunk: int | None, chunk_delay: float = 0.0) -> bytes:
    content = text if chunk is None else f"{text}\n#sim:chunk={chunk}"
    if chunk_delay:
        content += f"\n#sim:chunk_delay={chunk_delay}"
    body: dict[str, Any] = {"model": "sim-echo", "messages": [{"role": "user", "content": content}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def http_request(port: int, body: bytes) -> bytes:
    """The whole HTTP/1.1 request, encoded once so that sending it costs the load generator nothing."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# ---- the load generator's HTTP client ------------------------------------------------------------------


class BodySink(Protocol):
    def feed(self, data: bytes) -> None: ...


class Discard:
    """Non-streamed answers: only the status matters, the body is read to free the connection."""

    def feed(self, data: bytes) -> None:
        return None


class FirstToken:
    """Streamed answers: when the first non-empty content delta arrived, and whether `[DONE]` closed it.

    Events are parsed only until the first content delta; after that only `[DONE]` is looked for, so a
    long stream costs the load generator next to nothing."""

    __slots__ = ("_buffer", "done", "error", "first")

    def __init__(self) -> None:
        self.first: float | None = None
        self.done = False
        self.error = False
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        if self.first is None:
            self._buffer += data
            while self.first is None and (cut := self._buffer.find(b"\n\n")) >= 0:
                event, self._buffer = self._buffer[:cut], self._buffer[cut + 2 :]
                self._look_at(event)
        if b"data: [DONE]" in data:
            self.done = True

    def _look_at(self, event: bytes) -> None:
        for line in event.split(b"\n"):
            payload = line[5:].strip() if line.startswith(b"data:") else b""
            if not payload or payload == b"[DONE]":
                continue
            chunk = json.loads(payload)
            if "error" in chunk:
                self.error = True
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    self.first = time.perf_counter()
                    return


class Collect:
    """The whole body, for the sanity check."""

    def __init__(self) -> None:
        self.body = bytearray()

    def feed(self, data: bytes) -> None:
        self.body += data


class StaleConnection(Exception):
    """A kept-alive connection the server had already closed: no byte of a response came back."""


async def read_response(reader: asyncio.StreamReader, sink: BodySink) -> tuple[int, bool]:
    """Status and whether the connection stays open; the body goes to `sink` (Content-Length or chunked)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise StaleConnection from exc
        raise
    status = int(head[9:12])
    length: int | None = None
    chunked, keep = False, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = b"close" not in value.lower()
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            sink.feed((await reader.readexactly(size + 2))[:-2])
        await reader.readuntil(b"\r\n")  # the empty trailer section
    elif length is not None:
        if length:
            sink.feed(await reader.readexactly(length))
    else:
        sink.feed(await reader.read())
        keep = False
    return status, keep


@dataclass(slots=True)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    uses: int = 0


class Pool:
    """Keep-alive connections to one server, opened on demand up to `limit`; requests beyond that wait
    (and their wait counts in their latency, as a real client's would)."""

    def __init__(self, port: int, limit: int) -> None:
        self.port, self.limit = port, limit
        self.opened = 0
        self._open = 0
        self._idle: collections.deque[Connection] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[Connection | None]] = collections.deque()

    async def acquire(self) -> Connection:
        while self._idle:
            conn = self._idle.popleft()  # oldest first, so no connection idles into a keep-alive timeout
            if not conn.reader.at_eof():
                return conn
            self.discard(conn)
        if self._open < self.limit:
            self._open += 1  # the slot is ours before the connection exists
            return await self._connect()
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter  # a connection, or None: a slot to open one in
        except asyncio.CancelledError:
            # Timed out just as a connection or a slot was handed over: pass it on.
            if waiter.done() and not waiter.cancelled():
                if (late := waiter.result()) is None:
                    self._free_slot()
                else:
                    self.release(late)
            raise
        return handed if handed is not None else await self._connect()

    async def _connect(self) -> Connection:
        """A new connection in a slot already counted in `_open`."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except BaseException:
            self._free_slot()
            raise
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return Connection(reader, writer)

    def release(self, conn: Connection) -> None:
        if not self._wake(conn):
            self._idle.append(conn)

    def discard(self, conn: Connection) -> None:
        conn.writer.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection slot fell free: a waiter takes it over, or the pool counts one fewer."""
        if not self._wake(None):
            self._open -= 1

    def _wake(self, conn: Connection | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def close(self) -> None:
        while self._idle:
            self._idle.popleft().writer.close()


async def exchange(pool: Pool, request: bytes, sink: BodySink) -> int:
    """Send one request on a pooled connection; a reused connection found closed is replaced once."""
    for attempt in range(2):
        conn = await pool.acquire()
        try:
            conn.writer.write(request)
            status, keep = await read_response(conn.reader, sink)
        except (StaleConnection, ConnectionResetError, BrokenPipeError):
            pool.discard(conn)
            if conn.uses and attempt == 0:
                continue
            raise
        except BaseException:  # a timeout cancels us mid-response: the connection is unusable
            pool.discard(conn)
            raise
        conn.uses += 1
        if keep:
            pool.release(conn)
        else:
            pool.discard(conn)
        return status
    raise AssertionError("unreachable")


# ---- open-loop load --------------------------------------------------------------------------------------


@dataclass
class Load:
    """One run's requests: which server, at what rate, for how long (the warm-up is sent, not measured)."""

    label: str
    port: int
    requests: Sequence[bytes]
    rate: float
    seconds: float
    warmup: float
    stream: bool
    timeout: float
    connections: int


@dataclass
class Timings:
    """Per measured request: seconds from its scheduled time to send, first token and end; its outcome."""

    due: np.ndarray
    lag: np.ndarray
    first: np.ndarray
    latency: np.ndarray
    ok: np.ndarray
    errors: collections.Counter[str]
    wall: float
    cpu: dict[str, float]  # CPU seconds each process used over the run, warm-up included
    sent_with_warmup: int
    connections: int


class CpuClock:
    """CPU seconds used by processes (all their threads) and by this one, read from /proc."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, IndexError, ValueError):
                out[name] = float("nan")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["client"] = usage.ru_utime + usage.ru_stime
        return out


async def run_load(load: Load, clock: CpuClock) -> Timings:
    """Send `rate` requests a second on a fixed timetable, whatever the server's pace; wait for them all."""
    warm = int(load.rate * load.warmup)
    total = warm + max(1, int(load.rate * load.seconds))
    due, start, first, end = (np.full(total, np.nan) for _ in range(4))
    ok = np.zeros(total, dtype=bool)
    errors: collections.Counter[str] = collections.Counter()
    pool = Pool(load.port, load.connections)

    async def one(i: int) -> None:
        start[i] = time.perf_counter()
        sink: FirstToken | Discard = FirstToken() if load.stream else Discard()
        failure = None
        try:
            async with asyncio.timeout(load.timeout):
                status = await exchange(pool, load.requests[i % len(load.requests)], sink)
            end[i] = time.perf_counter()
            if status != 200:
                failure = f"http_{status}"
            elif isinstance(sink, FirstToken):
                first[i] = np.nan if sink.first is None else sink.first
                if sink.error or not sink.done or sink.first is None:
                    failure = "stream_incomplete"
        except TimeoutError:
            failure = "timeout"
        except Exception as exc:
            failure = type(exc).__name__
        if failure is None:
            ok[i] = True
        elif i >= warm:  # warm-up failures are not counted (they are not measured either)
            errors[failure] += 1

    pending: set[asyncio.Task[None]] = set()
    t0 = time.perf_counter() + 0.05
    cpu_before, wall_before = clock.read(), time.perf_counter()
    for i in range(total):
        due[i] = t0 + i / load.rate
        if (delay := due[i] - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    wall = time.perf_counter() - wall_before
    cpu_after = clock.read()
    pool.close()
    measured = slice(warm, total)
    return Timings(
        due=due[measured],
        lag=start[measured] - due[measured],
        first=first[measured] - due[measured],
        latency=end[measured] - due[measured],
        ok=ok[measured],
        errors=errors,
        wall=wall,
        cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_after},
        sent_with_warmup=total,
        connections=pool.opened,
    )


# ---- figures ---------------------------------------------------------------------------------------------


def percentiles_ms(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)] * 1e3
    if not len(values):
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "max": float("nan")}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values.max())}


def summarize(load: Load, timings: Timings) -> dict[str, Any]:
    """The run's figures: counts, achieved rate, latency (and first-token) percentiles, CPU per request."""
    sent, good = len(timings.ok), int(timings.ok.sum())
    done = timings.due + np.where(timings.ok, timings.latency, np.nan)
    span = (np.nanmax(done) - timings.due[0]) if good else float("nan")
    out: dict[str, Any] = {
        "path": load.label,
        "rate": load.rate,
        "seconds": load.seconds,
        "stream": load.stream,
        "sent": sent,
        "ok": good,
        "errors": sent - good,
        "error_kinds": dict(timings.errors),
        "achieved_rps": good / span if good else 0.0,
        "latency_ms": percentiles_ms(np.where(timings.ok, timings.latency, np.nan)),
        "send_lag_ms": percentiles_ms(timings.lag),
        "connections": timings.connections,
        "cpu_ms_per_request": {k: v * 1e3 / timings.sent_with_warmup for k, v in timings.cpu.items()},
        "cpu_percent": {k: 100 * v / timings.wall for k, v in timings.cpu.items()},
    }
    if load.stream:
        out["first_token_ms"] = percentiles_ms(np.where(timings.ok, timings.first, np.nan))
    return out


def added(direct: dict[str, Any], gateway: dict[str, Any], key: str) -> dict[str, float]:
    return {q: gateway[key][q] - direct[key][q] for q in ("p50", "p90", "p99", "max")}


# ---- processes -------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Which CPUs each party runs on (taskset lists); None: not pinned."""

    gateway: str | None
    sim: str | None
    client: str | None

    def describe(self) -> str:
        return (
            f"gateway on CPU {self.gateway}, simulator on CPU {self.sim}, load generator on CPU {self.client}"
        )


def default_layout(cpus: int) -> Layout:
    if cpus >= 2:
        return Layout(gateway="1", sim="0", client="0")
    return Layout(gateway="0", sim="0", client="0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_set(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


@dataclass
class Servers:
    sim: subprocess.Popen[bytes]
    gateway: subprocess.Popen[bytes]
    sim_port: int
    gateway_port: int
    gateway_log: Path


def launch(
    command: list[str], cpus: str | None, cwd: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]  # taskset execs the command: same pid
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited ({process.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} was not ready after {seconds:.0f} s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def servers(layout: Layout, events: str) -> Iterator[Servers]:
    """The simulator and the gateway in front of it, each on its CPUs; both stopped however we leave."""
    with tempfile.TemporaryDirectory(prefix="vallum-overhead-") as tmp:
        workdir = Path(tmp)
        sink = {
            "store": "{sink: store}",  # the embedded default: SQLite in the work directory
            "jsonl": f"{{sink: jsonl, path: {workdir / 'events.jsonl'}}}",
            "none": "{sink: none}",
        }[events]
        config = workdir / "gateway.yaml"
        config.write_text(f"drain_s: 1\nevents: {sink}\n", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        sim_port, gateway_port = free_port(), free_port()
        logs = {"sim": workdir / "sim.log", "gateway": workdir / "gateway.log"}
        vallum = [sys.executable, "-m", "vallum"]
        sim_command = [*vallum, "upstream-sim", "--port", str(sim_port)]
        upstream = f"http://127.0.0.1:{sim_port}/v1"
        serve_command = [*vallum, "serve", "--port", str(gateway_port), "--upstream", upstream]
        sim = launch(sim_command, layout.sim, workdir, logs["sim"], env)
        gateway: subprocess.Popen[bytes] | None = None
        try:
            gateway = launch(
                [*serve_command, "--config", str(config)], layout.gateway, workdir, logs["gateway"], env
            )
            wait_ready(f"http://127.0.0.1:{sim_port}/v1/models", sim, logs["sim"])
            wait_ready(f"http://127.0.0.1:{gateway_port}/healthz", gateway, logs["gateway"])
            yield Servers(sim, gateway, sim_port, gateway_port, logs["gateway"])
        finally:
            if gateway is not None:
                stop(gateway)
            stop(sim)


def gateway_health(servers: Servers) -> dict[str, Any]:
    """Events the gateway dropped (its log queue overflowed) and the warnings it logged during the runs."""
    dropped = float("nan")
    with urllib.request.urlopen(f"http://127.0.0.1:{servers.gateway_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("vallum_events_dropped "):
                dropped = float(line.split()[1])
    log = servers.gateway_log.read_text(errors="replace").splitlines()
    warnings = [line for line in log if "WARNING" in line or "ERROR" in line or "Traceback" in line]
    return {"events_dropped": dropped, "log_warnings": len(warnings), "first_warnings": warnings[:5]}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- phases ----------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every phase needs: the servers, the pre-encoded requests per server and mode, the options."""

    servers: Servers
    args: argparse.Namespace
    clock: CpuClock
    requests: dict[tuple[int, bool], list[bytes]]
    texts: list[str]

    def load(self, path: str, rate: float, seconds: float, stream: bool) -> Load:
        port = self.servers.gateway_port if path == "gateway" else self.servers.sim_port
        return Load(
            label=path,
            port=port,
            requests=self.requests[(port, stream)],
            rate=rate,
            seconds=seconds,
            warmup=self.args.warmup,
            stream=stream,
            timeout=self.args.timeout,
            connections=self.args.connections,
        )

    async def run(self, path: str, rate: float, seconds: float, stream: bool) -> dict[str, Any]:
        load = self.load(path, rate, seconds, stream)
        result = summarize(load, await run_load(load, self.clock))
        await asyncio.sleep(self.args.settle)
        return result


async def sanity_check(bench: Bench) -> dict[str, Any]:
    """Every prompt through the gateway once: HTTP 200 and the echo unchanged (nothing blocked or
    redacted), plus a few streams reassembled; otherwise the timings would measure the wrong path."""
    port = bench.servers.gateway_port
    pool = Pool(port, 16)
    problems: list[str] = []

    async def check(index: int, stream: bool) -> None:
        text = bench.texts[index]
        sink = Collect()
        status = await exchange(pool, bench.requests[(port, stream)][index], sink)
        if status != 200:
            problems.append(f"prompt {index}: HTTP {status}: {bytes(sink.body[:300])!r}")
            return
        if stream:
            content = ""
            for line in bytes(sink.body).split(b"\n"):
                if line.startswith(b"data: ") and line[6:] != b"[DONE]":
                    for choice in json.loads(line[6:]).get("choices") or ():
                        content += (choice.get("delta") or {}).get("content") or ""
        else:
            content = json.loads(sink.body)["choices"][0]["message"]["content"]
        if content != f"You said: {text.strip()}":
            problems.append(f"prompt {index} ({'stream' if stream else 'json'}): the answer was changed")

    semaphore = asyncio.Semaphore(16)

    async def limited(index: int, stream: bool) -> None:
        async with semaphore:
            await check(index, stream)

    jobs = [limited(i, False) for i in range(len(bench.texts))]
    jobs += [limited(i, True) for i in range(0, len(bench.texts), max(1, len(bench.texts) // 8))]
    await asyncio.gather(*jobs)
    pool.close()
    if problems:
        raise SystemExit(
            "sanity check failed; the gateway does not pass these prompts:\n" + "\n".join(problems[:10])
        )
    return {"prompts": len(bench.texts), "streams": len(jobs) - len(bench.texts), "ok": True}


async def side_by_side(bench: Bench, rate: float, seconds: float, stream: bool) -> dict[str, Any]:
    direct = await bench.run("direct", rate, seconds, stream)
    gateway = await bench.run("gateway", rate, seconds, stream)
    out = {"direct": direct, "gateway": gateway, "added_latency_ms": added(direct, gateway, "latency_ms")}
    if stream:
        out["added_first_token_ms"] = added(direct, gateway, "first_token_ms")
    return out


def step_passes(result: dict[str, Any], rate: float, p99_bound_ms: float) -> bool:
    """Sustained: nothing failed, the tail stayed bounded, and the server kept pace with the timetable."""
    errors, p99, achieved = result["errors"], result["latency_ms"]["p99"], result["achieved_rps"]
    return bool(errors == 0 and p99 <= p99_bound_ms and achieved >= 0.95 * rate)


async def ramp(bench: Bench) -> dict[str, Any]:
    """Rising rates, each sent directly (to show the load generator and simulator keep up) and through
    the gateway; stops at the first step the gateway fails."""
    steps, sustained, limit = [], 0.0, None
    bound = bench.args.ramp_p99_ms
    for rate in bench.args.ramp_rates:
        direct = await bench.run("direct", rate, bench.args.ramp_seconds, False)
        gateway = await bench.run("gateway", rate, bench.args.ramp_seconds, False)
        direct_ok, gateway_ok = step_passes(direct, rate, bound), step_passes(gateway, rate, bound)
        steps.append({"rate": rate, "direct": direct, "gateway": gateway, "passed": gateway_ok})
        print_ramp_step(steps[-1], direct_ok)
        if not direct_ok:
            limit = "load generator or simulator"
            break
        if not gateway_ok:
            limit = "gateway"
            break
        sustained = rate
    return {"steps": steps, "sustained_rps": sustained, "stopped_by": limit, "p99_bound_ms": bound}


async def soak(bench: Bench) -> dict[str, Any]:
    """Steady load through the gateway, sampling its RSS; the slope after the first minute is the leak."""
    pid, interval = bench.servers.gateway.pid, bench.args.rss_interval
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            samples.append((time.perf_counter() - started, rss_mb(pid)))
            await asyncio.sleep(interval)

    sampler = asyncio.create_task(sample())
    try:
        result = await bench.run("gateway", bench.args.soak_rate, bench.args.soak_seconds, False)
    finally:
        sampler.cancel()
    samples.append((time.perf_counter() - started, rss_mb(pid)))
    seconds = np.array([s for s, _ in samples])
    mb = np.array([m for _, m in samples])
    steady = seconds >= 60 if (seconds >= 60).sum() >= 2 else np.arange(len(seconds)) >= 1
    slope = float(np.polyfit(seconds[steady] / 60, mb[steady], 1)[0]) if steady.sum() >= 2 else float("nan")
    return {
        "load": result,
        "rss_samples": [{"s": round(s, 1), "mb": round(m, 2)} for s, m in samples],
        "rss_first_mb": float(mb[0]),
        "rss_last_mb": float(mb[-1]),
        "rss_max_mb": float(mb.max()),
        "slope_mb_per_min": slope,
    }


# ---- tables ----------------------------------------------------------------------------------------------


def fmt(value: float, width: int = 8, digits: int = 2) -> str:
    return f"{value:>{width}.{digits}f}" if value == value else f"{'-':>{width}}"


LATENCY_HEAD = (
    f"{'path':<9} {'sent':>6} {'ok':>6} {'err':>5} {'rate/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
    f"{'p99 ms':>8} {'max ms':>8} {'lag p99':>8} {'sim cpu':>8} {'gw cpu':>8}"
)


def latency_row(r: dict[str, Any], key: str = "latency_ms") -> str:
    q, cpu = r[key], r["cpu_ms_per_request"]
    gw = cpu.get("gateway", float("nan")) if r["path"] == "gateway" else float("nan")
    return (
        f"{r['path']:<9} {r['sent']:>6} {r['ok']:>6} {r['errors']:>5} {r['achieved_rps']:>8.1f} "
        f"{fmt(q['p50'])} {fmt(q['p90'])} {fmt(q['p99'])} {fmt(q['max'])} {fmt(r['send_lag_ms']['p99'])} "
        f"{fmt(cpu.get('sim', float('nan')))} {fmt(gw)}"
    )


def added_row(diff: dict[str, float]) -> str:
    cells = " ".join(f"{v:>+8.2f}" for v in (diff["p50"], diff["p90"], diff["p99"], diff["max"]))
    return f"{'added':<9} {'':>6} {'':>6} {'':>5} {'':>8} {cells}"


def print_side_by_side(title: str, phase: dict[str, Any], stream: bool) -> None:
    print(f"\n{title}")
    print(LATENCY_HEAD)
    print(latency_row(phase["direct"]))
    print(latency_row(phase["gateway"]))
    print(added_row(phase["added_latency_ms"]))
    if stream:
        print("  time to first content token:")
        print(latency_row(phase["direct"], "first_token_ms"))
        print(latency_row(phase["gateway"], "first_token_ms"))
        print(added_row(phase["added_first_token_ms"]))
    for r in (phase["direct"], phase["gateway"]):
        if r["error_kinds"]:
            print(f"  {r['path']} errors: {r['error_kinds']}")


RAMP_HEAD = (
    f"{'target/s':>8} {'path':<8} {'rate/s':>8} {'err':>5} {'p50 ms':>8} {'p99 ms':>8} {'lag p99':>8} "
    f"{'gw cpu%':>8} {'sim cpu%':>8} {'gen cpu%':>8}  step"
)


def print_ramp_step(step: dict[str, Any], direct_ok: bool) -> None:
    for path in ("direct", "gateway"):
        r = step[path]
        cpu = r["cpu_percent"]
        verdict = (
            ("ok" if direct_ok else "RIG LIMIT") if path == "direct" else ("ok" if step["passed"] else "FAIL")
        )
        gw = cpu.get("gateway", float("nan")) if path == "gateway" else float("nan")
        print(
            f"{step['rate']:>8.0f} {path:<8} {r['achieved_rps']:>8.1f} {r['errors']:>5} "
            f"{fmt(r['latency_ms']['p50'])} {fmt(r['latency_ms']['p99'])} {fmt(r['send_lag_ms']['p99'])} "
            f"{fmt(gw, 8, 0)} {fmt(cpu.get('sim', float('nan')), 8, 0)} {fmt(cpu['client'], 8, 0)}  {verdict}"
            + (f" {r['error_kinds']}" if r["error_kinds"] else "")
        )


def verdicts(results: dict[str, Any], flat_mb_per_min: float) -> list[tuple[str, str, str]]:
    """(target, measured, PASS/MISS/SKIP) for each of the issue's targets."""
    rows: list[tuple[str, str, bool | None]] = []
    if ns := results.get("non_streaming"):
        a, rate = ns["added_latency_ms"], ns["gateway"]["rate"]
        p50, p99 = TARGET_ADDED_P50_MS, TARGET_ADDED_P99_MS
        rows.append((f"added p50 <= {p50:g} ms at {rate:g} req/s", f"{a['p50']:+.2f} ms", a["p50"] <= p50))
        rows.append((f"added p99 <= {p99:g} ms at {rate:g} req/s", f"{a['p99']:+.2f} ms", a["p99"] <= p99))
    if rp := results.get("ramp"):
        top, first = rp["sustained_rps"], rp["steps"][0]["rate"]
        measured = f"{top:g} req/s" if top else f"below {first:g} req/s"
        if rp["stopped_by"] == "load generator or simulator":
            measured += " (the ramp was stopped by the load generator or simulator)"
        rows.append((f">= {TARGET_SUSTAINED_RPS:g} req/s sustained", measured, top >= TARGET_SUSTAINED_RPS))
    if st := results.get("streaming"):
        t = st["added_first_token_ms"]
        measured = f"{t['p50']:+.2f} ms (p99 {t['p99']:+.2f} ms)"
        rows.append(
            (
                f"first token adds <= {TARGET_ADDED_TTFT_MS:g} ms (p50)",
                measured,
                t["p50"] <= TARGET_ADDED_TTFT_MS,
            )
        )
    if sk := results.get("soak"):
        slope = sk["slope_mb_per_min"]
        measured = f"{slope:+.3f} MB/min over {sk['load']['seconds']:g} s"
        rows.append(
            (f"memory flat (slope <= {flat_mb_per_min:g} MB/min)", measured, abs(slope) <= flat_mb_per_min)
        )
    else:
        rows.append(("memory flat over a 10-minute soak", "not run (--soak-seconds 600)", None))
    return [
        (target, measured, {True: "PASS", False: "MISS", None: "SKIP"}[ok]) for target, measured, ok in rows
    ]


# ---- main ------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200, help="non-streaming rate, requests/s")
    p.add_argument("--seconds", type=float, default=20, help="non-streaming run length per path")
    p.add_argument("--stream-rate", type=float, default=50)
    p.add_argument("--stream-seconds", type=float, default=20)
    p.add_argument(
        "--stream-chunk", type=int, help="characters per streamed chunk (the simulator's default: 8)"
    )
    p.add_argument(
        "--stream-chunk-delay",
        type=float,
        default=0.0,
        help="seconds between streamed chunks, as a model's token rate (default 0: as fast as it writes)",
    )
    p.add_argument(
        "--ramp-rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[300, 400, 500, 600, 800, 1000],
    )
    p.add_argument("--ramp-seconds", type=float, default=10)
    p.add_argument("--ramp-p99-ms", type=float, default=1000, help="a ramp step fails above this p99")
    p.add_argument(
        "--soak-seconds", type=float, default=0, help="0 skips the soak; the README figure uses 600"
    )
    p.add_argument("--soak-rate", type=float, default=200)
    p.add_argument("--rss-interval", type=float, default=10, help="seconds between RSS samples in the soak")
    p.add_argument("--flat-mb-per-min", type=float, default=0.5, help="largest RSS slope that counts as flat")
    p.add_argument("--warmup", type=float, default=2, help="seconds of load sent before each measured run")
    p.add_argument("--settle", type=float, default=1, help="pause between runs, seconds")
    p.add_argument(
        "--timeout", type=float, default=10, help="per-request timeout, seconds (counted as an error)"
    )
    p.add_argument("--connections", type=int, default=512, help="most keep-alive connections per server")
    p.add_argument("--prompt-chars", type=int, default=1000)
    p.add_argument("--prompts", type=int, default=512, help="distinct prompts, cycled")
    p.add_argument(
        "--events", choices=["store", "jsonl", "none"], default="store", help="the gateway's event sink"
    )
    p.add_argument("--gateway-cpus", help="taskset CPU list for the gateway (default: 1)")
    p.add_argument("--sim-cpus", help="taskset CPU list for the simulator (default: 0)")
    p.add_argument("--client-cpus", help="CPU list for this load generator (default: 0)")
    p.add_argument("--no-pin", action="store_true", help="let the OS place every process")
    p.add_argument("--phases", default="nonstream,stream,ramp,soak", help="comma-separated subset to run")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds per phase")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = args.stream_seconds = 3
        args.ramp_seconds, args.ramp_rates = 2, [300, 500, 1000]
        args.warmup, args.settle, args.prompts = 0.5, 0.3, 128
        args.soak_seconds = min(args.soak_seconds, 20)
        args.rss_interval = min(args.rss_interval, 2)
    return args


def choose_layout(args: argparse.Namespace) -> Layout:
    if args.no_pin or shutil.which("taskset") is None:
        return Layout(None, None, None)
    layout = default_layout(len(os.sched_getaffinity(0)))
    return Layout(
        gateway=args.gateway_cpus or layout.gateway,
        sim=args.sim_cpus or layout.sim,
        client=args.client_cpus or layout.client,
    )


async def measure(bench: Bench) -> dict[str, Any]:
    args, results = bench.args, {}
    phases = set(args.phases.split(","))
    results["sanity_check"] = await sanity_check(bench)
    print(f"sanity check: {len(bench.texts)} prompts and a few streams pass the gateway unchanged")
    if "nonstream" in phases:
        results["non_streaming"] = phase = await side_by_side(bench, args.rate, args.seconds, False)
        print_side_by_side(f"non-streaming, {args.rate:g} req/s, {args.seconds:g} s per path", phase, False)
    if "stream" in phases:
        results["streaming"] = phase = await side_by_side(bench, args.stream_rate, args.stream_seconds, True)
        print_side_by_side(
            f"streaming, {args.stream_rate:g} req/s, {args.stream_seconds:g} s per path (total stream time, "
            "then first token)",
            phase,
            True,
        )
    if "ramp" in phases and args.ramp_rates:
        print(
            f"\nramp, {args.ramp_seconds:g} s per step, non-streaming (a step passes with 0 errors, "
            f"p99 <= {args.ramp_p99_ms:g} ms, rate within 5% of target)"
        )
        print(RAMP_HEAD)
        results["ramp"] = await ramp(bench)
        r = results["ramp"]
        print(
            f"sustained: {r['sustained_rps']:g} req/s" if r["sustained_rps"] else "sustained: no step passed",
            f"(stopped by the {r['stopped_by']})" if r["stopped_by"] else "",
        )
    if "soak" in phases and args.soak_seconds > 0:
        results["soak"] = s = await soak(bench)
        print(f"\nsoak, {args.soak_rate:g} req/s through the gateway for {args.soak_seconds:g} s")
        print(LATENCY_HEAD)
        print(latency_row(s["load"]))
        print(
            f"gateway RSS: first {s['rss_first_mb']:.1f} MB, last {s['rss_last_mb']:.1f} MB, "
            f"max {s['rss_max_mb']:.1f} MB, slope {s['slope_mb_per_min']:+.3f} MB/min "
            f"({len(s['rss_samples'])} samples)"
        )
    return results


def event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def jsonable(value: Any) -> Any:
    """Plain JSON: numpy numbers as Python ones, NaN (a figure with no samples) as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    return value


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # A plain `kill` should stop the servers too: SystemExit runs the clean-up that SIGTERM would skip.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    layout = choose_layout(args)
    if layout.client is not None:
        os.sched_setaffinity(0, cpu_set(layout.client))
    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"core layout: {layout.describe()}; gateway events: {args.events}")
    if load[0] >= 1.0:
        print("warning: the machine is busy; figures will be noisy", file=sys.stderr)
    texts = prompt_texts(args.prompts, args.prompt_chars)
    print(
        f"prompts: {len(texts)} distinct, {min(map(len, texts))}-{max(map(len, texts))} characters; "
        "'lag' = load generator's send delay, 'cpu' = CPU ms per request"
    )
    with servers(layout, args.events) as procs:
        requests = {
            (port, stream): [
                http_request(
                    port,
                    chat_body(t, stream, args.stream_chunk, args.stream_chunk_delay)
                    if stream
                    else chat_body(t, stream, None),
                )
                for t in texts
            ]
            for port in (procs.sim_port, procs.gateway_port)
            for stream in (False, True)
        }
        clock = CpuClock({"sim": procs.sim.pid, "gateway": procs.gateway.pid})
        bench = Bench(procs, args, clock, requests, texts)
        with event_loop_runner() as runner:
            results = runner.run(measure(bench))
        results["gateway_rss_end_mb"] = rss_mb(procs.gateway.pid)
        results["gateway_health"] = health = gateway_health(procs)
    print(
        f"\ngateway: {health['events_dropped']:g} events dropped, {health['log_warnings']} warnings logged"
        + "".join(f"\n  {line}" for line in health["first_warnings"])
    )
    print("\ntargets")
    for target, measured, verdict in verdicts(results, args.flat_mb_per_min):
        print(f"  {verdict:<4}  {target:<42} {measured}")
    if args.json:
        meta = {
            "cpus": os.cpu_count(),
            "load_average": load,
            "layout": asdict(layout),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "python": platform.python_version(),
        }
        args.json.write_text(json.dumps(jsonable({"meta": meta, **results}), indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
