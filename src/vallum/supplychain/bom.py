"""An AI bill of materials: CycloneDX 1.6 ML-BOM (JSON) of a model file or folder.

Each file is a component with its SHA-256, size, format and scan verdict; model files are of type
`machine-learning-model` (with the architecture a config names, where one does), configs and tokenizers
`data`, code `file`. Findings are listed as `vulnerabilities` that affect their file, so BOM consumers
(Dependency-Track, ...) show them without knowing vallum.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vallum.core.types import Severity
from vallum.supplychain.report import FileReport

MODEL_FORMATS = frozenset({
    "pickle", "joblib", "pytorch", "pytorch-legacy", "torchscript", "numpy", "numpy-npz", "safetensors",
    "gguf", "onnx", "keras", "keras-h5", "hdf5",
})  # fmt: skip
_DATA_FORMATS = frozenset({"json", "hf-config", "tokenizer-config", "chat-template", "text", "sentencepiece"})
_CDX_SEVERITY = {
    Severity.CRITICAL: "critical",
    Severity.ERROR: "high",
    Severity.WARNING: "medium",
    Severity.NOTICE: "info",
}
_HASH_CHUNK = 1 << 22


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def build_bom(root: Path, reports: Sequence[FileReport], version: str) -> dict[str, Any]:
    components = []
    vulnerabilities = []
    root_ref = "model"
    for report in reports:
        path = Path(report.path)
        name = _relative(path, root)
        ref = f"file:{name}"
        kind = (
            "machine-learning-model"
            if report.format in MODEL_FORMATS
            else "data"
            if report.format in _DATA_FORMATS
            else "file"
        )
        properties = [
            {"name": "vallum:format", "value": report.format},
            {"name": "vallum:verdict", "value": report.verdict.value},
            {"name": "vallum:size", "value": str(report.size)},
            *({"name": f"vallum:{k}", "value": v} for k, v in sorted(report.details.items())),
        ]
        component: dict[str, Any] = {"type": kind, "bom-ref": ref, "name": name, "properties": properties}
        with contextlib.suppress(OSError):  # unreadable: its verdict (error) already says so
            component["hashes"] = [{"alg": "SHA-256", "content": sha256_of(path)}]
        architecture = report.details.get("architecture")
        if kind == "machine-learning-model" and architecture:
            component["modelCard"] = {"modelParameters": {"modelArchitecture": architecture}}
        components.append(component)
        for i, finding in enumerate(report.findings):
            vulnerabilities.append(
                {
                    "bom-ref": f"{ref}#finding-{i}",
                    "id": finding.rule,
                    "source": {"name": "vallum"},
                    "ratings": [{"severity": _CDX_SEVERITY[finding.severity], "method": "other"}],
                    "description": finding.message,
                    "detail": finding.location,
                    "affects": [{"ref": ref}],
                }
            )
    config = next((r for r in reports if r.format == "hf-config" and r.details.get("architecture")), None)
    top: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": root_ref,
        "name": root.name or str(root),
    }
    if config is not None:
        top["modelCard"] = {"modelParameters": {"modelArchitecture": config.details["architecture"]}}
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": "vallum", "version": version}]},
            "component": top,
        },
        "components": components,
        "dependencies": [{"ref": root_ref, "dependsOn": [c["bom-ref"] for c in components]}],
    }
    if vulnerabilities:
        bom["vulnerabilities"] = vulnerabilities
    return bom


def _relative(path: Path, root: Path) -> str:
    if root.is_dir():
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name
