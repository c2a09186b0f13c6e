"""`vallum rag scan PATH... [--format text|json] [--output FILE] [--policy P.yaml] [--engine local|ray]`.

    run_rag_scan(paths, format="text", output=None, policy=None, engine="local") -> exit code

0 when every document is clean enough to index (allow, flag or redact), 1 when any document is blocked
or could not be read (unreadable documents fail closed), 2 for a usage error (no paths, unknown format,
bad policy, unwritable output, Ray unavailable or failing). Directories are walked for files with a
known extension. A document that cannot be read is reported with its reason and the run goes on. With
engine "ray" the documents are scanned on a Ray cluster (`vallum.ray_files`); the report is the same.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from vallum.errors import VallumError
from vallum.rag.extract import EXTENSIONS
from vallum.rag.report import render_json, render_text
from vallum.rag.scanner import DocumentScanner

FORMATS = ("text", "json")
ENGINES = ("local", "ray")
EXIT_CLEAN, EXIT_BLOCKING, EXIT_USAGE = 0, 1, 2


def run_rag_scan(
    paths: Sequence[str | Path],
    format: str = "text",
    output: str | Path | None = None,
    policy: str | Path | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    max_bytes: int | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> int:
    """Scan the documents under `paths` and write the report; `address` and `workers` are for engine "ray"
    (a running cluster's address, default a local instance; actors at once, default one per CPU)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not paths:
        err.write("vallum rag scan: give at least one file or directory to scan\n")
        return EXIT_USAGE
    if format not in FORMATS:
        err.write(f"vallum rag scan: unknown --format {format!r}; use one of: {', '.join(FORMATS)}\n")
        return EXIT_USAGE
    if engine not in ENGINES:
        err.write(f"vallum rag scan: unknown --engine {engine!r}; use one of: {', '.join(ENGINES)}\n")
        return EXIT_USAGE
    try:
        scanner = (
            DocumentScanner(policy) if max_bytes is None else DocumentScanner(policy, max_bytes=max_bytes)
        )
    except VallumError as exc:
        err.write(f"vallum rag scan: {exc}\n")
        return EXIT_USAGE
    documents = list(iter_documents(paths))
    if engine == "ray":
        from vallum.ray_files import scan_documents_on_ray

        try:
            reports = scan_documents_on_ray(
                documents, scanner.policy, max_bytes=scanner.max_bytes, address=address, workers=workers
            )
        except VallumError as exc:
            err.write(f"vallum rag scan: {exc}\n")
            return EXIT_USAGE
    else:
        reports = [scanner.scan_path(path) for path in documents]
    label = scanner.policy.label
    rendered = render_json(reports, label) if format == "json" else render_text(reports, label)
    if output is None:
        out.write(rendered)
    else:
        try:
            Path(output).write_text(rendered, encoding="utf-8")
        except OSError as exc:
            err.write(f"vallum rag scan: cannot write --output {output}: {exc.strerror or exc}\n")
            return EXIT_USAGE
    return EXIT_BLOCKING if any(r.blocking for r in reports) else EXIT_CLEAN


def iter_documents(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Each file named, and each file with a known extension under each directory named, sorted.

    A path that does not exist is yielded as is, so its report says so.
    """
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            yield path
            continue
        found: list[Path] = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / name for name in files if Path(name).suffix.lower() in EXTENSIONS)
        yield from sorted(found)
