"""Leave-one-source-out quality of the injection classifier: `python benchmarks/quality_loso.py`.

For every real source file, train without it (and without synthetic rows derived from it), calibrate on
the remaining held-out benign rows, and score the held-out source the way run time does (best window over
all normaliser views). Attack sources report recall, benign sources report false-positive rate, at the
"request" thresholds for paranoia 2 (1 % target) and 3 (2 % target) -- "data" thresholds for data sources.
Then the obfuscation catch rate: the shipped-recipe model on seeded obfuscations of held-out attack rows,
as a ratio to the catch rate of the plain originals.

Features are computed once and sliced per fold; folds use fewer solver iterations than the shipped build.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import INJECTION_FILES, load_examples
from training.fit import (
    SOURCE_GROUPS,
    Rows,
    calibrate,
    fit_binary,
    text_margins,
    to_rows,
)
from training.obfuscate import OBFUSCATIONS
from training.synthetic import generate
from vallum.models.features import FeatureSpec


def _subset(rows: Rows, keep: np.ndarray) -> tuple[Rows, np.ndarray]:
    """Rows of the kept examples, owners renumbered to positions in the kept list."""
    mask = keep[rows.owner]
    renumber = np.cumsum(keep) - 1
    return Rows(rows.matrix[mask], renumber[rows.owner[mask]]), np.flatnonzero(keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-iter", type=int, default=80)
    parser.add_argument("--sources", nargs="*", default=list(INJECTION_FILES))
    parser.add_argument("--skip-obfuscation", action="store_true", help="leave out the obfuscation table")
    parser.add_argument(
        "--dump", type=Path, help="save every fold's margins (.npz) to study calibration offline"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    spec = FeatureSpec()
    real = load_examples()
    examples = real + generate(real, seed=1)
    train_rows = to_rows(examples, spec)
    eval_rows = to_rows(examples, spec, runtime=True)
    origins = np.array([e.origin for e in examples])
    holdout = np.array([e.holdout for e in examples])
    labels = np.array([e.label for e in examples])
    print(f"featurised {len(examples)} examples in {time.perf_counter() - began:.0f}s")
    print("| held-out source | group | n | metric | P1 | P2 | P3 |\n|---|---|---:|---|---:|---:|---:|")
    recalls: dict[int, list[float]] = {1: [], 3: []}
    worst_fpr = {1: 0.0, 3: 0.0}
    dumped: dict[str, np.ndarray] = {}
    for source in args.sources:
        from_source = np.array([e.comes_from(source) for e in examples])
        fit_keep = ~from_source & ~holdout
        rows, kept = _subset(train_rows, fit_keep)
        fitted = [examples[i] for i in kept]
        weights, bias = fit_binary(fitted, rows, c=2.0, max_iter=args.max_iter)
        cal_keep = ~from_source & holdout & (labels == 0)
        cal_rows, cal_kept = _subset(eval_rows, cal_keep)
        cal = [examples[i] for i in cal_kept]
        cal_margins = text_margins(weights, bias, cal_rows, len(cal))
        thresholds = calibrate(cal, cal_margins)
        test_rows, test_kept = _subset(eval_rows, origins == source)
        margins = text_margins(weights, bias, test_rows, len(test_kept))
        if args.dump:
            dumped |= {f"{source}/cal_margins": cal_margins, f"{source}/cal_index": cal_kept}
            dumped |= {f"{source}/test_margins": margins, f"{source}/test_index": test_kept}
        group = examples[test_kept[0]].source_group
        g = SOURCE_GROUPS.index(group)
        test_labels = labels[test_kept]
        for label, metric in ((1, "recall"), (0, "FPR")):
            chosen = margins[test_labels == label]
            if len(chosen) == 0:
                continue
            rates = {level: float((chosen >= thresholds[g, level - 1]).mean()) for level in (1, 2, 3)}
            cells = " | ".join(f"{rates[level]:.3f}" for level in (1, 2, 3))
            print(f"| {source} | {group} | {len(chosen)} | {metric} | {cells} |", flush=True)
            for level in (1, 3):
                if label == 1:
                    recalls[level].append(rates[level])
                else:
                    worst_fpr[level] = max(worst_fpr[level], rates[level])
    for level in (1, 3):
        print(
            f"\nparanoia {level}: macro recall over attack sources {np.mean(recalls[level]):.3f}; "
            f"worst benign FPR {worst_fpr[level]:.3f}"
        )
    if args.dump:
        np.savez_compressed(args.dump, **dumped)
    if not args.skip_obfuscation:
        _obfuscation_ratio(examples, train_rows, eval_rows, holdout, spec)
    print(f"total {time.perf_counter() - began:.0f}s")


def _obfuscation_ratio(examples, train_rows, eval_rows, holdout, spec) -> None:  # type: ignore[no-untyped-def]
    rows, kept = _subset(train_rows, ~holdout)
    fitted = [examples[i] for i in kept]
    weights, bias = fit_binary(fitted, rows, c=2.0, max_iter=150)
    cal_keep = holdout & np.array([e.label == 0 for e in examples])
    cal_rows, cal_kept = _subset(eval_rows, cal_keep)
    cal = [examples[i] for i in cal_kept]
    threshold = calibrate(cal, text_margins(weights, bias, cal_rows, len(cal)))[0, 2]
    rng = random.Random(7)
    attacks = [
        e
        for e in examples
        if e.holdout and e.label == 1 and e.source_group == "request" and len(e.text) < 600
    ]
    attacks = rng.sample(attacks, min(200, len(attacks)))
    plain = text_margins(weights, bias, to_rows(attacks, spec, runtime=True), len(attacks))
    base = float((plain >= threshold).mean())
    print(
        f"\nobfuscation catch rate (request threshold, P3), {len(attacks)} short held-out attacks; plain: {base:.3f}"
    )
    print("| obfuscation | catch rate | ratio to plain |\n|---|---:|---:|")
    for name in sorted(OBFUSCATIONS):
        variants = [
            type(e)(OBFUSCATIONS[name](e.text, rng), 1, e.subtype, e.origin, e.source_group) for e in attacks
        ]
        margins = text_margins(weights, bias, to_rows(variants, spec, runtime=True), len(variants))
        rate = float((margins >= threshold).mean())
        print(f"| {name} | {rate:.3f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
