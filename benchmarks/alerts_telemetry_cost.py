"""What alerts and OpenTelemetry cost a gateway request, and how many events/s the alert rules evaluate.

    python benchmarks/alerts_telemetry_cost.py            # a few seconds; prints a table
    python benchmarks/alerts_telemetry_cost.py --n 100000

Rows: the telemetry calls one request makes (start, two verdicts, usage, end) with telemetry off (the
default) and on (the real SDK, batch span processor; spans go to an in-memory exporter so that no network
time is counted: export runs on the SDK's thread, not the request's); `Alerter.emit` (what the request
path pays for alerting); and the rules of examples/alerts.yaml evaluated on the alert thread's side.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from vallum.monitor.alert_rules import RuleSet, load_ruleset
from vallum.monitor.alerts import Alerter, AlertEvaluator
from vallum.monitor.tracing import Telemetry

RULES = Path(__file__).resolve().parent.parent / "examples" / "alerts.yaml"


def event(i: int) -> dict[str, Any]:
    blocked = i % 10 == 0  # one request in ten is an attack; a hundred identities
    return {
        "id": f"{i:032x}",
        "time": 1_700_000_000.0 + i * 0.01,
        "api": "openai",
        "route": "chat/completions",
        "model": "gpt-4o",
        "identity": {"tenant": "acme", "user": f"user{i % 100}", "api_key": "team-a", "ip": "127.0.0.1"},
        "shadow": False,
        "status": 400 if blocked else 200,
        "code": "input_blocked" if blocked else None,
        "input": {
            "action": "block" if blocked else "allow",
            "categories": ["injection"] if blocked else [],
            "scores": {"injection": 0.95 if blocked else 0.02},
            "findings": [],
            "guard_ms": 1.2,
        },
        "output": {"action": "allow", "categories": [], "scores": {}, "findings": [], "guard_ms": 0.4},
        "tokens": 42,
    }


def per_call_us(fn: Callable[[int], object], n: int, repeats: int = 5) -> float:
    """Median over `repeats` runs of the mean time of one call, in microseconds."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def one_request(telemetry: Telemetry) -> Callable[[int], object]:
    def run(i: int) -> None:
        span = telemetry.start_request("chat", "openai", "gpt-4o", "api.openai.com", 443, event_id="e")
        span.record_verdict("input", "allow", (), 1.2)
        span.record_verdict("output", "allow", (), 0.4)
        span.record_usage(30, 12, response_model="gpt-4o-2024-08-06", finish_reasons=("stop",))
        span.end()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per measurement")
    args = parser.parse_args()
    n = args.n
    rows: list[tuple[str, str]] = []

    off = Telemetry()
    rows.append(("telemetry off: one request's calls", f"{per_call_us(one_request(off), n):.3f} µs"))
    spans = InMemorySpanExporter()
    on = Telemetry(span_exporter=spans, metric_reader=InMemoryMetricReader())

    def on_request(i: int) -> None:
        one_request(on)(i)
        if i % 2048 == 0:
            spans.clear()  # keep memory flat; the exporter only stands in for the network

    rows.append(
        ("telemetry on (SDK, batch processor): one request's calls", f"{per_call_us(on_request, n):.1f} µs")
    )
    on.shutdown()

    ruleset = load_ruleset(RULES)
    events = [event(i) for i in range(n)]
    # Without channels: this row is the queue hand-off, not delivery (which happens on its own thread).
    silent = RuleSet(rules=tuple(r.model_copy(update={"channels": ()}) for r in ruleset.rules))
    alerter = Alerter(silent, env={}, queue_size=n * 5)
    rows.append(
        ("Alerter.emit (request path)", f"{per_call_us(lambda i: alerter.emit(events[i]), n):.2f} µs")
    )
    alerter.close()

    evaluator = AlertEvaluator(ruleset.rules)
    start = time.perf_counter()
    for e in events:
        evaluator.observe(e)
    elapsed = time.perf_counter() - start
    fired = sum(s.fired for s in evaluator.stats.values())
    rows.append(
        (
            f"rule evaluation, {len(ruleset.rules)} example rules (alert thread)",
            f"{n / elapsed:,.0f} events/s",
        )
    )
    rows.append(
        (
            "alerts fired / deduplicated in that run",
            f"{fired} / {sum(s.deduplicated for s in evaluator.stats.values())}",
        )
    )

    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
