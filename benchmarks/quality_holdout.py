"""The shipped classifier on the rows its build held out (one in five, by content hash), per source.

    python benchmarks/quality_holdout.py

Unlike leave-one-source-out, every source was seen in training (other rows of it): this is the
in-distribution figure. Rates are at paranoia 1 with each row's source-group threshold.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.data import load_examples
from training.fit import text_margins, to_rows
from training.synthetic import generate
from vallum.detectors.injection import DEFAULT_MODEL_PATH
from vallum.models.linear import load_model


def main() -> None:
    model = load_model(DEFAULT_MODEL_PATH)
    real = load_examples()
    held = [e for e in real + generate(real, seed=1) if e.holdout]
    margins = text_margins(model.weights, model.bias, to_rows(held, model.spec, runtime=True), len(held))
    hits: dict[tuple[str, int], list[bool]] = defaultdict(list)
    for example, margin in zip(held, margins, strict=True):
        hits[(example.origin, example.label)].append(margin >= model.threshold(example.source_group, 1))
    print("| source | metric | n | paranoia 1 |\n|---|---|---:|---:|")
    for (origin, label), flags in sorted(hits.items()):
        print(f"| {origin} | {'recall' if label else 'FPR'} | {len(flags)} | {np.mean(flags):.3f} |")


if __name__ == "__main__":
    main()
