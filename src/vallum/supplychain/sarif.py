"""SARIF 2.1.0 for code-scanning tools (GitHub code scanning, Azure DevOps, ...): one run, the catalogue's
rules in the driver, one result per finding, each file an artifact."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from vallum.core.types import Severity
from vallum.supplychain.catalogue import ModelScanCatalogue
from vallum.supplychain.report import FileReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.NOTICE: "note",
}
# GitHub sorts security results by this (0-10): critical >= 9, high >= 7, medium >= 4, low below.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.ERROR: "8.0",
    Severity.WARNING: "5.5",
    Severity.NOTICE: "2.0",
}


def render_sarif(reports: Sequence[FileReport], catalogue: ModelScanCatalogue, version: str) -> str:
    rules = list(catalogue.rules)
    index = {rule.id: i for i, rule in enumerate(rules)}
    artifacts = []
    results = []
    for artifact_index, report in enumerate(reports):
        uri = _uri(report.path)
        artifacts.append(
            {
                "location": {"uri": uri},
                "length": report.size,
                "properties": {"format": report.format, "verdict": report.verdict.value},
            }
        )
        for finding in report.findings:
            where = f" ({finding.location})" if finding.location else ""
            result: dict[str, object] = {
                "ruleId": finding.rule,
                "ruleIndex": index.get(finding.rule, -1),
                "level": _LEVEL[finding.severity],
                "message": {"text": f"{finding.message}{where}"},
                "locations": [
                    {
                        "physicalLocation": {"artifactLocation": {"uri": uri, "index": artifact_index}},
                        **(
                            {"logicalLocations": [{"fullyQualifiedName": finding.location}]}
                            if finding.location
                            else {}
                        ),
                    }
                ],
                "properties": {"severity": finding.severity.name.lower(), "verdict": report.verdict.value},
            }
            if result["ruleIndex"] == -1:
                del result["ruleIndex"]
            results.append(result)
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "vallum",
                        "version": version,
                        "semanticVersion": version,
                        "rules": [
                            {
                                "id": rule.id,
                                "name": rule.name,
                                "shortDescription": {"text": rule.name.replace("-", " ")},
                                "fullDescription": {"text": rule.description},
                                "defaultConfiguration": {"level": _LEVEL[rule.severity_level]},
                                "properties": {
                                    "tags": ["security", "supply-chain", "model-file"],
                                    "security-severity": _SECURITY_SEVERITY[rule.severity_level],
                                },
                            }
                            for rule in rules
                        ],
                    }
                },
                "artifacts": artifacts,
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _uri(path: str) -> str:
    p = Path(path)
    return p.as_uri() if p.is_absolute() else quote(p.as_posix())
