"""Behaviour analytics through a real gateway: the simulated users and attackers of behaviour_analytics.py,
replayed over HTTP through `vallum serve` in front of `vallum upstream-sim`, detection read from the admin API.

    python benchmarks/behaviour_analytics_gateway.py                 # 150 benign users, 4 per profile, 3 hours
    python benchmarks/behaviour_analytics_gateway.py --users 300 --per-profile 6 --hours 4
    python benchmarks/behaviour_analytics_gateway.py --pii           # PII detection on, so harvesting shows

What is the same as behaviour_analytics.py: the population and its behaviour (rates, chat sessions with
history, retries after a refusal, batch jobs, support tenants whose answers quote customers' records) and the
attacker profiles (burst, slow probing, mutation campaign, multi-turn extraction, and output harvesting), from
the same generators and seed; a user's next step (retry, give up) follows the default Guard's verdict, as there.

What is real here: every request goes over HTTP to a gateway (default policy, events in a SQLite store,
behaviour analytics in process) with a client key per simulated API key (tenant in the key), the end user in
`x-vallum-user`, and the simulated source address as the client's own loopback address (127.x.y.z), so the
gateway derives all four identities itself and scans every message itself. Answers come from the upstream
simulator (a script rule per answer, chosen by a marker in a system message). Detection is read from
`GET /admin/identities` (the gateway's latest risk per identity): after every attacker request until it is
stopped, and every `--poll-every` requests for everyone, whose highest reading counts as its peak.

Time: the simulated hours are replayed in minutes, so the gateway's event clock follows the replay (one
request at a time, each stamped with its simulated time; the analytics windows read event time). Nothing
else in the gateway is changed. Upstream-sim runs in its own process; the gateway and this driver share one.
The default gateway policy scans outputs for secrets and leakage but not for personal data, so the harvest
profile (output PII) is not detected with it; `--pii` adds the PII detector to the gateway's policy (as
examples/policy.yaml shows), which behaviour_analytics.py's output scanner always has.

Reported, as in behaviour_analytics.py: requests until an attacker's own user identity reaches alert, and
cool-down or block; false alarms per 1,000 benign identities (users, keys, IPs and tenants no attacker used);
and, beside them, the same traffic fed straight to BehaviourAnalytics (as behaviour_analytics.py does).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import socket
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from behaviour_analytics import (
    EPOCH,
    HOUR,
    Actor,
    Outcome,
    Pools,
    Scanner,
    Traffic,
    report,
    simulate,
)

import vallum.gateway.app as gateway_app
from tests.loopback import serve_in_thread
from vallum.gateway import Gateway, GatewayConfig
from vallum.gateway.identity import digest
from vallum.monitor.analytics import AnalyticsConfig
from vallum.monitor.windows import MemoryWindows

ADMIN_TOKEN = "bench-analyst-token"


class RecordingTraffic(Traffic):
    """The simulator's traffic, keeping each request's messages and answer for the replay."""

    def __init__(self, pools: Pools, scanner: Scanner, rng: random.Random) -> None:
        super().__init__(pools, scanner, rng)
        self.sent: list[tuple[float, Actor, dict[str, Any]]] = []

    def event(self, actor: Actor, t: float, messages: list[str], answer: str | None) -> dict[str, Any]:
        built = super().event(actor, t, messages, answer)
        self.sent.append((t, actor, {**built, "_messages": list(messages), "_answer": answer or ""}))
        return built


@dataclass
class Replayed:
    peaks: dict[str, float]  # identity -> highest risk read
    firsts: dict[str, dict[str, int]]  # attacker -> level reached -> its request number
    drivers: dict[str, list[str]]  # attacker -> features contributing when it reached alert
    used: set[str]  # identities attackers used
    verdicts: Counter[str]  # the gateway's answers to benign requests (error code or "allowed")
    seconds: float


class ReplayClock:
    """The gateway's `time` module as the replay sees it: wall time is the simulated time of the request
    being replayed; everything else (perf_counter, monotonic, sleep) is the real thing."""

    def __init__(self) -> None:
        self.now = EPOCH

    def module(self) -> types.ModuleType:
        clock = types.ModuleType("time")
        clock.__dict__.update(time.__dict__)
        clock.time = lambda: self.now  # type: ignore[attr-defined]
        return clock


def loopback_address(ip: str | None) -> str:
    """A distinct 127.x.y.z for each simulated source address (Linux routes all of 127/8 to loopback)."""
    number = int.from_bytes(hashlib.blake2b((ip or "").encode(), digest_size=3).digest(), "big")
    a, b, c = number >> 16, (number >> 8) & 255, number & 255
    return f"127.{a or 1}.{b}.{c or 1}"


@contextmanager
def upstream_sim(script: Path) -> Iterator[str]:
    """`vallum upstream-sim` in its own process, serving the answers of the script."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "vallum", "upstream-sim", "--port", str(port), "--script", str(script)],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("vallum upstream-sim did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def chat_body(event: dict[str, Any], marker: str) -> dict[str, Any]:
    texts: list[str] = event["_messages"]
    # The simulator's history alternates the user's turns and the answers they got.
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": text} for i, text in enumerate(texts[:-1])
    ]
    return {
        "model": "sim-echo",
        "messages": [
            {"role": "system", "content": f"You are a helpful assistant. Reference {marker}."},
            *history,
            {"role": "user", "content": texts[-1]},
        ],
    }


PII_POLICY = """\
version: default-with-pii
detectors:
  injection_classifier: {}
  injection_signatures: {}
  obfuscation: {}
  secrets: {}
  leakage: {}
  output: {}
  pii: {}
"""


def replay(
    sent: list[tuple[float, Actor, dict[str, Any]]],
    attackers: set[str],
    poll_every: int,
    workdir: Path,
    pii: bool,
) -> Replayed:
    """Send every request in time order, reading risks back from the admin API."""
    answers = sorted({e["_answer"] for _, _, e in sent if e["_answer"]})
    markers = {answer: f"[[answer-{i}]]" for i, answer in enumerate(answers)}
    script = workdir / "answers.yaml"
    rules = [{"match": m, "scope": "conversation", "reply": a} for a, m in markers.items()]
    script.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    keys = {str(e["identity"]["api_key"]): str(e["identity"]["tenant"]) for _, _, e in sent}
    secrets = {name: f"vk-bench-{hashlib.sha256(name.encode()).hexdigest()[:24]}" for name in keys}
    clock = ReplayClock()
    thresholds = AnalyticsConfig()
    policy = workdir / "policy.yaml"
    policy.write_text(PII_POLICY, encoding="utf-8")
    with upstream_sim(script) as sim:
        config = GatewayConfig.model_validate(
            {
                "upstreams": [{"name": "sim", "base_url": f"{sim}/v1"}],
                "routes": [{"model": "*", "upstream": "sim"}],
                "policies": {"default": str(policy) if pii else None},
                "keys": [
                    {"id": name, "sha256": digest(secrets[name]), "tenant": tenant}
                    for name, tenant in keys.items()
                ],
                "database_url": f"sqlite:///{workdir / 'vallum.db'}",
                "admin": {"tokens": [{"id": "bench", "sha256": digest(ADMIN_TOKEN), "role": "analyst"}]},
                "limits": {"max_loop_lag_ms": 60_000},
            }
        )
        real_time = gateway_app.__dict__["time"]
        gateway_app.__dict__["time"] = clock.module()
        gateway = Gateway(config)
        clients: dict[str, httpx.Client] = {}
        peaks: dict[str, float] = defaultdict(float)
        firsts: dict[str, dict[str, int]] = defaultdict(dict)
        drivers: dict[str, list[str]] = {}
        counts: Counter[str] = Counter()
        used: set[str] = set()
        verdicts: Counter[str] = Counter()
        try:
            with serve_in_thread(gateway.app()) as url:
                admin = httpx.Client(
                    base_url=url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
                )

                def latest() -> dict[str, dict[str, Any]]:
                    gateway.monitor.flush()  # the monitor worker has assessed every request sent so far
                    listed = admin.get("/admin/identities", params={"limit": 100_000}).json()["identities"]
                    return {r["identity"]: r for r in listed}

                started = time.perf_counter()
                for n, (t, actor, event) in enumerate(sent, 1):
                    clock.now = t
                    source = loopback_address(event["identity"]["ip"])
                    client = clients.get(source)
                    if client is None:
                        transport = httpx.HTTPTransport(local_address=source)
                        client = clients[source] = httpx.Client(base_url=url, transport=transport, timeout=60)
                    headers = {
                        "authorization": f"Bearer {secrets[str(event['identity']['api_key'])]}",
                        "x-vallum-user": str(event["identity"]["user"]),
                    }
                    answer = client.post(
                        "/v1/chat/completions",
                        json=chat_body(event, markers.get(event["_answer"], "none")),
                        headers=headers,
                    )
                    counts[actor.name] += 1
                    attacker = actor.name in attackers
                    if not attacker:
                        verdicts[answer.json().get("error", {}).get("code") or "allowed"] += 1
                    if attacker:
                        tenant, user = event["identity"]["tenant"], event["identity"]["user"]
                        me = f"user:{tenant}/{user}"
                        used.update(_identity_keys(event["identity"], source))
                        if "block" not in firsts[actor.name]:
                            risks = latest()
                            mine = risks.get(me, {"score": 0.0, "contributions": {}})
                            if "alert" not in firsts[actor.name] and mine["score"] >= thresholds.alert_at:
                                drivers[actor.name] = [k for k, v in mine["contributions"].items() if v > 0]
                            _note(firsts[actor.name], mine["score"], counts[actor.name], thresholds)
                            for key, risk in risks.items():
                                peaks[key] = max(peaks[key], risk["score"])
                    if n % poll_every == 0 or n == len(sent):
                        for key, risk in latest().items():
                            peaks[key] = max(peaks[key], risk["score"])
                seconds = time.perf_counter() - started
                admin.close()
        finally:
            for client in clients.values():
                client.close()
            gateway_app.__dict__["time"] = real_time
    return Replayed(peaks, firsts, drivers, used, verdicts, seconds)


def _identity_keys(identity: dict[str, Any], source: str) -> list[str]:
    return [
        f"user:{identity['tenant']}/{identity['user']}",
        f"key:{identity['api_key']}",
        f"tenant:{identity['tenant']}",
        f"ip:{source}",
    ]


def _note(firsts: dict[str, int], score: float, requests: int, c: AnalyticsConfig) -> None:
    for name, at in (("alert", c.alert_at), ("cooldown", c.cooldown_at), ("block", c.block_at)):
        if score >= at and name not in firsts:
            firsts[name] = requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=2, help="random seed (2: the evaluation seed)")
    parser.add_argument("--users", type=int, default=150, help="benign users")
    parser.add_argument("--per-profile", type=int, default=4, help="attackers of each profile")
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours of traffic")
    parser.add_argument("--poll-every", type=int, default=20, help="read every identity's risk this often")
    parser.add_argument(
        "--pii", action="store_true", help="the default policy plus the PII detector (catches harvesting)"
    )
    args = parser.parse_args()
    print(
        f"seed {args.seed}; {args.users} benign users, {args.per_profile} attackers per profile, "
        f"{args.hours:g} simulated hours; replayed through vallum serve + vallum upstream-sim over HTTP; "
        f"gateway policy: {'default + pii' if args.pii else 'default'}"
    )
    pools, scanner = Pools.load(), Scanner("newest")
    recorders: list[RecordingTraffic] = []

    def traffic_of(rng: random.Random) -> Traffic:
        recorders.append(RecordingTraffic(pools, scanner, rng))
        return recorders[-1]

    direct = simulate(
        args.seed, MemoryWindows(), AnalyticsConfig(), traffic_of, args.users, args.per_profile, args.hours
    )
    end = EPOCH + args.hours * HOUR + 2 * HOUR  # where simulate() stops
    sent = sorted((item for item in recorders[0].sent if item[0] <= end), key=lambda item: item[0])
    attackers = {a.name for a in direct.actors if a.kind != "benign"}
    print(f"{len(sent):,} requests generated; {len(attackers)} attackers")

    with tempfile.TemporaryDirectory(prefix="vallum-bench-analytics-") as workdir:
        run = replay(sent, attackers, args.poll_every, Path(workdir), args.pii)
    print(f"replayed in {run.seconds:.0f} s ({len(sent) / run.seconds:.0f} requests/s through the gateway)")

    # The gateway's readings in the shape report() reads: each actor's firsts, every identity's peak.
    gateway_actors = []
    for actor in direct.actors:
        copy = Actor(actor.name, actor.kind, actor.identity, actor.requests, actor.fresh, actor.fresh_blocked)
        copy.firsts = dict(run.firsts.get(actor.name, {}))
        copy.drivers.update(run.drivers.get(actor.name, []))
        gateway_actors.append(copy)
    verdicts = run.verdicts
    benign = sum(verdicts.values())
    actions = Counter({"block": verdicts["input_blocked"], "allow": benign - verdicts["input_blocked"]})
    # Peaks come from polling, so "without volume" (which needs every contribution) is not told apart.
    peaks = dict(run.peaks)
    through = Outcome(gateway_actors, peaks, peaks, run.used, len(sent), [], actions, direct.alert_at)
    report(through, "through the gateway")
    print(
        "  gateway answers to benign requests: "
        + ", ".join(f"{code} {n / max(benign, 1):.2%}" for code, n in verdicts.most_common())
    )
    report(direct, "the same traffic fed straight to BehaviourAnalytics")


if __name__ == "__main__":
    main()
