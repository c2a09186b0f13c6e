"""Speed of the injection classifier on one core: `python benchmarks/speed_injection.py`.

Cold start (import + model load + first scan) in a fresh process, then p50/p99 of normalise + detect for a
1 KB prompt, the featuriser alone in microseconds per 1 KB, a 100 KB document, and peak RSS.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

COLD = (
    "import time; t=time.perf_counter();"
    "from vallum.detectors.injection import InjectionClassifier;"
    "from vallum.text.normalize import normalize; from vallum.core.types import Source;"
    "InjectionClassifier().detect(normalize('hello there'), Source.USER, 2);"
    "print(time.perf_counter()-t)"
)
PROMPT = (
    "Could you help me plan a week of vegetarian dinners? I cook for two adults and a teenager, we like "
    "spicy food, and I have about forty minutes on weekdays. Please include a shopping list grouped by "
    "aisle, note which meals can be prepared ahead on Sunday, and suggest a dessert for Friday. "
) * 4


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]


def main() -> None:
    cold = float(
        subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, check=True).stdout
    )
    from vallum.core.types import Source
    from vallum.detectors.injection import InjectionClassifier
    from vallum.models.features import featurize
    from vallum.text.normalize import normalize

    detector = InjectionClassifier()
    prompt = PROMPT[:1024]
    document = (PROMPT * 120)[:100_000]
    for _ in range(200):
        detector.detect(normalize(prompt), Source.USER, 2)
    scan, feats = [], []
    for _ in range(2000):
        t = time.perf_counter()
        detector.detect(normalize(prompt), Source.USER, 2)
        scan.append(time.perf_counter() - t)
        t = time.perf_counter()
        featurize([prompt])
        feats.append(time.perf_counter() - t)
    t = time.perf_counter()
    detector.detect(normalize(document), Source.RETRIEVAL, 2)
    long_ms = (time.perf_counter() - t) * 1e3
    p50, p99 = _percentiles(scan)
    f50, _ = _percentiles(feats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| measure | value |\n|---|---:|")
    print(f"| cold start (import + load + first scan) | {cold * 1e3:.0f} ms |")
    print(f"| 1 KB prompt, normalise + detect, p50 | {p50 * 1e6:.0f} µs |")
    print(f"| 1 KB prompt, normalise + detect, p99 | {p99 * 1e6:.0f} µs |")
    print(f"| featuriser alone, one 1 KB window, p50 | {f50 * 1e6:.0f} µs |")
    print(f"| 100 KB document, normalise + detect | {long_ms:.0f} ms |")
    print(f"| peak RSS | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
