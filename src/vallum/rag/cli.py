"""`vallum rag scan PATH... [--format text|json] [--output FILE] [--policy P.yaml]` as a function.

    run_rag_scan(paths, format="text", output=None, policy=None) -> exit code

0 when every document is clean enough to index (allow, flag or redact), 1 when any document is blocked
or could not be read (unreadable documents fail closed), 2 for a usage error (no paths, unknown format,
bad policy, unwritable output). Directories are walked for files with a known extension. A document
that cannot be read is reported with its reason and the run goes on.
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
from vallum.rag.scanner import DocumentReport, DocumentScanner

FORMATS = ("text", "json")
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
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if not paths:
        err.write("vallum rag scan: give at least one file or directory to scan\n")
        return EXIT_USAGE
    if format not in FORMATS:
        err.write(f"vallum rag scan: unknown --format {format!r}; use one of: {', '.join(FORMATS)}\n")
        return EXIT_USAGE
    try:
        scanner = (
            DocumentScanner(policy) if max_bytes is None else DocumentScanner(policy, max_bytes=max_bytes)
        )
    except VallumError as exc:
        err.write(f"vallum rag scan: {exc}\n")
        return EXIT_USAGE
    reports: list[DocumentReport] = []
    for path in iter_documents(paths):
        reports.append(scanner.scan_path(path))
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
