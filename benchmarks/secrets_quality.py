"""Secrets detection quality and speed, side by side with detect-secrets (default plugins and filters).

    python benchmarks/secrets_quality.py                 # full run, prints tables (detect-secrets: ~10 min)
    python benchmarks/secrets_quality.py --stdlib-mb 5   # only the first 5 MB of the standard library

1. detect-secrets' own plugin test lines (../shared/data/train/secrets_detect_secrets_cases.jsonl):
   recall on label 1, false positives on label 0 (near misses). IP addresses are reported separately:
   they are PII (the `pii` detector), not credentials.
2. A generated corpus (benchmarks/secrets_corpus.py, seeded): real-format fake tokens inside code,
   config and prose, found when a finding overlaps the token's span; hard negatives of the same shape.
3. Benign code: the Python standard library's own *.py sources; findings per MB and files with any.
4. Speed: microseconds per KB on prose and on code; time on pathological 1 MB inputs.
detect-secrets scans files, so each case is written to a temporary file and scanned as detect-secrets
normally would (`SecretsCollection.scan_file`).
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _corpus import DATA, texts_of_size
from secrets_corpus import generate

from vallum.detectors.secrets import SecretsDetector

CASES_FILE = DATA / "secrets_detect_secrets_cases.jsonl"
OUT_OF_SCOPE = ("ip_public",)  # detect-secrets plugins for things that are not credentials
SUFFIX = {"code": ".py", "config": ".env", "prose": ".txt"}


class DetectSecrets:
    """detect-secrets 1.x with its default plugins and filters, file by file as its CLI does."""

    def __init__(self) -> None:
        from detect_secrets import SecretsCollection
        from detect_secrets.settings import default_settings

        self._collection, self._settings = SecretsCollection, default_settings

    def scan_paths(self, paths: Iterable[Path]) -> dict[str, list[tuple[int, str]]]:
        """(line number, secret value) per file."""
        found: dict[str, list[tuple[int, str]]] = {}
        with self._settings():
            for path in paths:
                collection = self._collection()
                collection.scan_file(str(path))
                found[str(path)] = [(s.line_number, s.secret_value or "") for _, s in collection]
        return found

    def scan_texts(self, texts: list[str], suffixes: list[str]) -> list[list[tuple[int, str]]]:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, (text, suffix) in enumerate(zip(texts, suffixes, strict=True)):
                path = Path(tmp) / f"case{i}{suffix}"
                path.write_text(text, encoding="utf-8")
                paths.append(path)
            found = self.scan_paths(paths)
            return [found[str(p)] for p in paths]


def _ds_overlaps(text: str, hits: list[tuple[int, str]], start: int, end: int) -> bool:
    """A detect-secrets value counts when one of its occurrences overlaps the true secret's span."""
    for _, value in hits:
        at = text.find(value) if value else -1
        while at >= 0:
            if at < end and start < at + len(value):
                return True
            at = text.find(value, at + 1)
    return False


def dataset_rows(ds: DetectSecrets, detector: SecretsDetector) -> list[list[str]]:
    rows = [json.loads(line) for line in CASES_FILE.open(encoding="utf-8")]
    ds_hits = ds.scan_texts([r["text"] for r in rows], [".txt"] * len(rows))
    table = []
    for scope, keep in (
        ("all rows", lambda r: True),
        ("credentials only", lambda r: r["category"].split("/")[-1] not in OUT_OF_SCOPE),
    ):
        chosen = [(r, h) for r, h in zip(rows, ds_hits, strict=True) if keep(r)]
        pos = [(r, h) for r, h in chosen if r["label"] == 1]
        neg = [(r, h) for r, h in chosen if r["label"] == 0]
        for name, found in (
            ("vallum p1", lambda r, h: bool(detector.find(r["text"], 1))),
            ("vallum p3", lambda r, h: bool(detector.find(r["text"], 3))),
            ("detect-secrets", lambda r, h: bool(h)),
        ):
            tp = sum(found(r, h) for r, h in pos)
            fp = sum(found(r, h) for r, h in neg)
            table.append([scope, name, f"{tp}/{len(pos)}", f"{tp / len(pos):.3f}", f"{fp}/{len(neg)}"])
    return table


def generated_rows(ds: DetectSecrets, detector: SecretsDetector) -> tuple[list[list[str]], list[str]]:
    cases = generate()
    ds_hits = ds.scan_texts([c.text for c in cases], [SUFFIX[c.context] for c in cases])
    table, misses = [], []
    for name in ("vallum p1", "detect-secrets"):
        by_context: dict[str, list[int]] = {}
        false_pos = negatives = 0
        for case, hits in zip(cases, ds_hits, strict=True):
            if name == "detect-secrets":
                found = _ds_overlaps(case.text, hits, case.start, case.end) if case.is_secret else bool(hits)
            else:
                findings = detector.find(case.text, 1)
                found = any(f.span and f.span.start < case.end and case.start < f.span.end for f in findings)
                found = found if case.is_secret else bool(findings)
                if case.is_secret and not found:
                    misses.append(f"{case.kind}: {case.text[:90]!r}")
            if case.is_secret:
                by_context.setdefault(case.context, [0, 0])
                by_context[case.context][0] += found
                by_context[case.context][1] += 1
            else:
                negatives += 1
                false_pos += found
        tp = sum(v[0] for v in by_context.values())
        total = sum(v[1] for v in by_context.values())
        per_context = "  ".join(f"{k} {v[0] / v[1]:.3f}" for k, v in sorted(by_context.items()))
        table.append([name, f"{tp}/{total}", f"{tp / total:.3f}", per_context, f"{false_pos}/{negatives}"])
    return table, misses


def stdlib_files(limit_mb: float | None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        files.append(path)
        total += path.stat().st_size
        if limit_mb is not None and total >= limit_mb * 1e6:
            break
    return files


def stdlib_rows(ds: DetectSecrets, detector: SecretsDetector, limit_mb: float | None) -> list[list[str]]:
    files = stdlib_files(limit_mb)
    texts = {}
    for path in files:
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
    megabytes = sum(len(t.encode("utf-8")) for t in texts.values()) / 1e6
    started = time.perf_counter()
    ours = {p: detector.find(t, 1) for p, t in texts.items()}
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    theirs = ds.scan_paths(texts)
    theirs_s = time.perf_counter() - started
    rows = []
    for name, counts, seconds in (
        ("vallum p1", [len(v) for v in ours.values()], ours_s),
        ("detect-secrets", [len(v) for v in theirs.values()], theirs_s),
    ):
        rows.append(
            [
                name,
                f"{len(texts)} files, {megabytes:.1f} MB",
                str(sum(counts)),
                f"{sum(counts) / megabytes:.2f}",
                str(sum(1 for c in counts if c)),
                f"{seconds:.1f} s",
            ]
        )
    return rows


def _us_per_kb(detector: SecretsDetector, texts: list[str], rounds: int = 3) -> float:
    size_kb = sum(len(t.encode("utf-8")) for t in texts) / 1e3
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for text in texts:
            detector.find(text, 1)
        best = min(best, time.perf_counter() - started)
    return best * 1e6 / size_kb


def speed_rows(detector: SecretsDetector) -> list[list[str]]:
    prose = texts_of_size(10_000, 100)
    code = [p.read_text(encoding="utf-8") for p in stdlib_files(2.0)]
    junk_b64 = ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkrLw" * 22_000)[:1_000_000]
    near_misses = ("ghp_" + "a1B2c3D4e5" * 3 + " password = 'abc' key=" + "Zz9" * 5 + "\n") * 15_000
    pem_headers = "-----BEGIN RSA PRIVATE KEY-----\n" * 31_000
    rows = [
        ["prose (100 x 10 KB)", f"{_us_per_kb(detector, prose):.1f} µs/KB"],
        ["code (2 MB of stdlib)", f"{_us_per_kb(detector, code):.1f} µs/KB"],
    ]
    for name, text in (
        ("1 MB base64-ish line", junk_b64),
        ("1 MB of near misses", near_misses),
        ("1 MB of PEM headers", pem_headers),
    ):
        started = time.perf_counter()
        findings = detector.find(text, 4)
        rows.append([name, f"{(time.perf_counter() - started) * 1e3:.0f} ms, {len(findings)} findings"])
    return rows


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stdlib-mb",
        type=float,
        default=None,
        help="scan only the first MB of the stdlib (detect-secrets needs ~20 s per MB)",
    )
    parser.add_argument("--show-misses", action="store_true", help="list generated secrets vallum missed")
    args = parser.parse_args()
    detector, ds = SecretsDetector(), DetectSecrets()

    print_table(
        "detect-secrets plugin test lines",
        ["rows", "detector", "found", "recall", "false pos."],
        dataset_rows(ds, detector),
    )
    generated, misses = generated_rows(ds, detector)
    print_table(
        "generated corpus (seed 1337)",
        ["detector", "found", "recall", "recall by context", "false pos. on hard negatives"],
        generated,
    )
    print_table(
        "benign code: Python standard library",
        ["detector", "scanned", "findings", "per MB", "files with any", "time"],
        stdlib_rows(ds, detector, args.stdlib_mb),
    )
    print_table("vallum speed (one core)", ["input", "result"], speed_rows(detector))
    if args.show_misses:
        print("\nmissed:", *misses, sep="\n  ")


if __name__ == "__main__":
    main()
