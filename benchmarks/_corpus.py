"""Texts for speed benchmarks, cut from the shared benign and attack data so timings use realistic input."""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def rows(name: str, limit: int | None = None) -> list[str]:
    out = []
    with (DATA / f"{name}.jsonl").open(encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["text"])
            if limit is not None and len(out) >= limit:
                break
    return out


def texts_of_size(size: int, count: int) -> list[str]:
    """`count` distinct benign texts of exactly `size` characters, stitched from real prompts."""
    pool = rows("benign_ultrachat") + rows("benign_t0_prompts", 3000)
    out, i = [], 0
    while len(out) < count:
        parts, length = [], 0
        while length < size:
            parts.append(pool[i % len(pool)])
            length += len(parts[-1]) + 1
            i += 1
        out.append(" ".join(parts)[:size])
    return out
