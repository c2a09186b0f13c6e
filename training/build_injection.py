"""Rebuild the shipped injection classifier: `python -m training.build_injection [--out PATH]`.

Deterministic: fixed seeds, stable ordering, lbfgs, and a timestamp-free archive give the same bytes
for the same data and code.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from training.data import DATA_DIR, load_examples
from training.fit import train_model
from training.synthetic import generate
from vallum.models.linear import save_model

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src" / "vallum" / "models" / "injection.npz"
SEED = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    began = time.perf_counter()
    real = load_examples(args.data)
    examples = real + generate(real, seed=SEED)
    model = train_model(examples)
    save_model(model, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    print(
        f"{len(examples)} examples -> {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, sha256 {digest}) "
        f"in {time.perf_counter() - began:.0f}s; thresholds (request, data) x paranoia 1..4:\n{model.thresholds}"
    )


if __name__ == "__main__":
    main()
