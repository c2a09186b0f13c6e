"""What `vallum model scan` and `vallum model bom` do; cli.py parses the flags and calls these.

Exit codes: 0 every file is safe; 1 some file is not (unsafe, or not judged: error, or unsupported unless
the policy sets allow_unsupported); 2 the command could not run (no such path, a bad policy file or
format, an unwritable output, Ray unavailable or failing with `--engine ray`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from vallum.errors import VallumError
from vallum.supplychain.bom import build_bom
from vallum.supplychain.catalogue import bundled_catalogue
from vallum.supplychain.errors import SupplyChainError
from vallum.supplychain.json_output import render_json
from vallum.supplychain.policy import ModelScanPolicy, load_policy
from vallum.supplychain.report import FileReport, FileVerdict
from vallum.supplychain.sarif import render_sarif
from vallum.supplychain.scanner import ModelScanner
from vallum.supplychain.text_output import render_text

EXIT_SAFE, EXIT_UNSAFE, EXIT_USAGE = 0, 1, 2
FORMATS = ("text", "json", "sarif")
ENGINES = ("local", "ray")


def run_model_scan(
    paths: Sequence[str | Path],
    format: str = "text",
    output: str | Path | None = None,
    policy: str | Path | None = None,
    *,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
) -> int:
    """Scan `paths` (files and folders), write the report in `format` to `output` (stdout when None or
    "-"), and return the exit code. Engine "ray" judges the files on a Ray cluster (`vallum.ray_files`) at
    `address` (default: a local instance) with `workers` actors (default: one per CPU); same report."""
    if format not in FORMATS:
        return _usage(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if engine not in ENGINES:
        return _usage(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not paths:
        return _usage("nothing to scan: give one or more files or folders")
    try:
        scan_policy = load_policy(policy)
        scanner = ModelScanner(scan_policy)
        if engine == "ray":
            from vallum.ray_files import scan_models_on_ray

            reports = scan_models_on_ray(
                list(scanner.files(paths)), scan_policy, address=address, workers=workers
            )
        else:
            reports = scanner.scan(paths)
    except VallumError as exc:  # SupplyChainError, or Ray unavailable or failing
        return _usage(str(exc))
    version = _version()
    if format == "json":
        text = render_json(reports, version)
    elif format == "sarif":
        text = render_sarif(reports, bundled_catalogue(), version)
    else:
        text = render_text(reports)
    try:
        _write(text, output)
    except OSError as exc:
        return _usage(f"cannot write {output}: {exc.strerror or exc}")
    return exit_code(reports, scan_policy)


def run_model_bom(
    path: str | Path, output: str | Path | None = None, policy: str | Path | None = None
) -> int:
    """Scan `path` (a model file or folder) and write its CycloneDX ML-BOM (JSON) to `output` (stdout when
    None or "-"); the exit code is the scan's, the BOM is written either way."""
    root = Path(path)
    try:
        scan_policy = load_policy(policy)
        reports = ModelScanner(scan_policy).scan([root])
    except SupplyChainError as exc:
        return _usage(str(exc))
    bom = build_bom(root, reports, _version())
    try:
        _write(json.dumps(bom, indent=2, ensure_ascii=False) + "\n", output)
    except OSError as exc:
        return _usage(f"cannot write {output}: {exc.strerror or exc}")
    return exit_code(reports, scan_policy)


def exit_code(reports: Sequence[FileReport], policy: ModelScanPolicy) -> int:
    passing = {FileVerdict.SAFE, FileVerdict.UNSUPPORTED} if policy.allow_unsupported else {FileVerdict.SAFE}
    return EXIT_SAFE if all(r.verdict in passing for r in reports) else EXIT_UNSAFE


def _write(text: str, output: str | Path | None) -> None:
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    Path(output).write_text(text, encoding="utf-8")


def _usage(message: str) -> int:
    print(f"vallum: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _version() -> str:
    from vallum import __version__

    return __version__
