"""`vallum rag scan` and `vallum model scan` with `--engine ray`: the files of a scan spread over Ray workers.

The driver lists the files exactly as the local engine does, hands them to a pool of Ray Data actors one
file per call (`vallum.batch_ray.map_on_ray`), each actor building its scanner once, and puts the reports
back in the listing's order: the rendered report is the local engine's, byte for byte.

Workers read the files by path, so on a cluster of several machines the files must be on storage every
node mounts, and vallum must be installed on every node.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from vallum.batch_ray import RayScanError, cluster_cpus, map_on_ray, ray_running
from vallum.core.policy import Policy
from vallum.rag.scanner import DocumentReport, DocumentScanner
from vallum.supplychain.policy import ModelScanPolicy
from vallum.supplychain.report import FileReport
from vallum.supplychain.scanner import ModelScanner

Report = TypeVar("Report")
# Builds a scanner on a worker and returns its scan-one-file function; must pickle (a partial of a
# module-level function does), as Ray ships it to every actor.
ScannerFactory = Callable[[], Callable[[Path], Any]]


class FileScanner:
    """A Ray Data actor: one scanner for its whole life, one file per call (batch size 1)."""

    def __init__(self, build: ScannerFactory) -> None:
        self.scan = build()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        results = []
        for spec in batch["item"]:
            item = json.loads(str(spec))
            report = self.scan(Path(item["path"]))
            # Reports are rich objects (findings, spans, enums); they travel pickled, as Ray carries every
            # object between its own processes anyway, inside map_on_ray's one-string-per-item protocol.
            packed = base64.b64encode(pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)).decode()
            results.append(json.dumps({"index": item["index"], "report": packed}))
        return {"result": results}


def scan_files_on_ray(
    files: Sequence[Path],
    build: Callable[[], Callable[[Path], Report]],
    address: str | None = None,
    *,
    workers: int | None = None,
) -> list[Report]:
    """`build()`'s scan of each file, in the order of `files`, computed on Ray.

    `address` is a running cluster's (as `ray.init` takes it); without it a Ray already initialised in this
    process is used, else a local one of `workers` CPUs is started for the scan and stopped after it.
    `workers` actors (default: one per CPU of the cluster) scan at once.
    """
    if not files:
        return []
    reports: list[Report | None] = [None] * len(files)
    items = [json.dumps({"index": i, "path": str(path)}) for i, path in enumerate(files)]
    with ray_running(address, workers) as ray:
        size = max(1, min(workers or cluster_cpus(ray), len(files)))
        results = map_on_ray(ray, items, FileScanner, {"build": build}, size)
        with contextlib.closing(results):
            for line in results:
                result = json.loads(line)
                reports[result["index"]] = pickle.loads(base64.b64decode(result["report"]))
    missing = [str(files[i]) for i, report in enumerate(reports) if report is None]
    if missing:  # fail closed: a file without a report was not judged
        raise RayScanError(f"no report came back for {len(missing)} files, e.g. {missing[0]}")
    return cast(list[Report], reports)


def scan_documents_on_ray(
    files: Sequence[Path],
    policy: Policy,
    *,
    max_bytes: int,
    address: str | None = None,
    workers: int | None = None,
) -> list[DocumentReport]:
    """`vallum rag scan --engine ray`: each document scanned as `DocumentScanner(policy).scan_path` does."""
    build = functools.partial(_document_scanner, policy, max_bytes)
    return scan_files_on_ray(files, build, address, workers=workers)


def scan_models_on_ray(
    files: Sequence[Path],
    policy: ModelScanPolicy,
    *,
    address: str | None = None,
    workers: int | None = None,
) -> list[FileReport]:
    """`vallum model scan --engine ray`: each file judged as `ModelScanner(policy).scan_file` does."""
    return scan_files_on_ray(files, functools.partial(_model_scanner, policy), address, workers=workers)


def _document_scanner(policy: Policy, max_bytes: int) -> Callable[[Path], DocumentReport]:
    return DocumentScanner(policy, max_bytes=max_bytes).scan_path


def _model_scanner(policy: ModelScanPolicy) -> Callable[[Path], FileReport]:
    return ModelScanner(policy).scan_file
