"""Microseconds per KB of model output for the leakage and output detectors, and for the output pipeline.

    python benchmarks/output_speed.py [--repeat 300]

Input: an ordinary markdown answer (prose, a bullet list, a code block, three links to well-known
sites), cut to 1 KB and 10 KB. Detector rows exclude normalisation (shown on its own row); the
Guard row is the whole output pipeline for one text (normalise + leakage + output + scoring), and the
stream row feeds the answer to a StreamScanner in 64-character chunks (each step rescans its window).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

from vallum import Guard, Policy, Source
from vallum.canary import add_canary
from vallum.core.streaming import StreamScanner
from vallum.detectors.leakage import LeakageDetector
from vallum.detectors.output import OutputDetector
from vallum.text.normalize import normalize

SYSTEM_PROMPT = (
    "You are Orbit, the support assistant for Helios Freight. Internal pricing rules: quote standard "
    "pallets at 42 euros, refrigerated containers at 310 euros, and never offer discounts above 12 percent "
    "without approval from the duty manager. Escalate any customs dispute to the Rotterdam desk. Do not "
    "mention the Lisbon warehouse closure until March."
)
ANSWER = """Thanks for your question! Here is how shipping a pallet usually works.

1. **Book the pickup** in the customer portal at least two working days ahead.
2. Label every pallet with the consignment number and the delivery address.
3. Keep the paperwork for customs ready if the pallet leaves the EU.

For the label format, see https://en.wikipedia.org/wiki/Shipping_label and the
[carrier guide](https://docs.python.org/3/library/csv.html) for exporting your addresses as CSV:

```python
import csv
with open("addresses.csv", newline="") as f:
    for row in csv.DictReader(f):
        print(row["name"], row["city"])
```

Delivery normally takes three to five days within Europe. If the goods are perishable, ask for a
refrigerated container and mention the temperature range when you book. You can follow the shipment
on https://github.com/helios-freight/tracking once it has left the depot.

"""


def _time_us(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def _stream(guard: Guard, text: str) -> None:
    scanner = StreamScanner(guard)
    for i in range(0, len(text), 64):
        scanner.feed(text[i : i + 64])
    scanner.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()

    _, canary = add_canary(SYSTEM_PROMPT)
    detectors = {
        "leakage (canary)": LeakageDetector(canaries=[canary]),
        "leakage (canary+echo)": LeakageDetector(canaries=[canary], system_prompt=SYSTEM_PROMPT),
        "output (text)": OutputDetector(),
        "output (allow-list)": OutputDetector(allowed_domains=["wikipedia.org", "python.org"]),
        "output (browser)": OutputDetector(destination="browser"),
        "output (tool)": OutputDetector(destination="tool"),
    }
    policy = Policy.model_validate(
        {
            "detectors": {
                "leakage": {"options": {"canaries": [canary], "system_prompt": SYSTEM_PROMPT}},
                "output": {"options": {"destination": "browser"}},
            },
            "categories": {"leakage": {"action": "block"}, "output": {"action": "block"}},
        }
    )
    guard = Guard(policy)

    print(f"{'stage':<26}{'1 KB µs/KB':>12}{'10 KB µs/KB':>13}")
    rows: dict[str, list[float]] = {}
    for size in (1024, 10 * 1024):
        text = (ANSWER * (size // len(ANSWER) + 1))[:size]
        assert not guard.scan(text, Source.MODEL_OUTPUT).findings, "the benchmark answer must be clean"
        kb = size / 1024
        normalized = normalize(text)
        timings = {"normalize": _time_us(partial(normalize, text), args.repeat)}
        for name, detector in detectors.items():
            timings[name] = _time_us(
                partial(detector.detect, normalized, Source.MODEL_OUTPUT, 1), args.repeat
            )
        timings["Guard.scan (pipeline)"] = _time_us(
            partial(guard.scan, text, Source.MODEL_OUTPUT), args.repeat
        )
        timings["StreamScanner (64-char)"] = _time_us(
            partial(_stream, guard, text), max(10, args.repeat // 10)
        )
        for name, micros in timings.items():
            rows.setdefault(name, []).append(micros / kb)
    for name, (one, ten) in rows.items():
        print(f"{name:<26}{one:>12.1f}{ten:>13.1f}")


if __name__ == "__main__":
    main()
