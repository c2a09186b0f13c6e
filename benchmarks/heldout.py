"""Detection on the hand-written held-out sets: multilingual attacks/benign and English over-defense.

python benchmarks/heldout.py [--policy P.yaml]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from vallum import Guard, Message, Source

DATA = Path(__file__).parent / "data"


def load(name: str) -> list[dict[str, object]]:
    with (DATA / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def report(title: str, rows: list[dict[str, object]], guard: Guard, group_by: str) -> None:
    verdicts = guard.scan_batch(
        [Message(str(r["text"]), source=Source(str(r.get("source", "user")))) for r in rows]
    )
    groups: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    misses = []
    for row, verdict in zip(rows, verdicts, strict=True):
        hit = "injection" in verdict.categories
        groups[str(row.get(group_by, "all"))].append((int(row["label"]), hit))  # type: ignore[call-overload]
        if hit != bool(row["label"]):
            misses.append((row["label"], round(verdict.scores["injection"], 3), str(row["text"])[:100]))
    print(f"\n{title}")
    print(f"{group_by:<8} {'attacks':>8} {'recall':>7} {'benign':>7} {'FPR':>6}")
    totals = [0, 0, 0, 0]
    for key, pairs in sorted(groups.items()):
        pos = [hit for label, hit in pairs if label == 1]
        neg = [hit for label, hit in pairs if label == 0]
        totals = [totals[0] + len(pos), totals[1] + sum(pos), totals[2] + len(neg), totals[3] + sum(neg)]
        recall = sum(pos) / len(pos) if pos else float("nan")
        fpr = sum(neg) / len(neg) if neg else float("nan")
        print(f"{key:<8} {len(pos):>8} {recall:>7.2f} {len(neg):>7} {fpr:>6.2f}")
    print(
        f"{'total':<8} {totals[0]:>8} {totals[1] / totals[0]:>7.2f} {totals[2]:>7} {totals[3] / totals[2]:>6.2f}"
    )
    for label, score, text in misses:
        kind = "missed attack" if label else "false positive"
        print(f"  {kind} ({score}): {text}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", type=Path)
    args = parser.parse_args()
    guard = Guard(args.policy)
    report("Multilingual held-out set", load("multilingual_heldout.jsonl"), guard, "lang")
    report("English over-defense held-out set", load("overdefense_heldout.jsonl"), guard, "source")


if __name__ == "__main__":
    main()
