"""Writing a run's reports: HTML for people, JSON for tools, SARIF for code scanning, JUnit for CI, and
the exports that feed successful attacks back into the defences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vallum.redteam.export import labelled_jsonl, regression_yaml
from vallum.redteam.reports.html import render_html
from vallum.redteam.reports.junit import to_junit
from vallum.redteam.reports.sarif import to_sarif
from vallum.redteam.results import Report

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REPORT_SARIF = "report.sarif"
REPORT_JUNIT = "junit.xml"
SUCCESSFUL_JSONL = "successful-attacks.jsonl"
REGRESSION_YAML = "regression-suite.yaml"
COMPARISON_JSON = "comparison.json"

__all__ = [
    "COMPARISON_JSON",
    "REGRESSION_YAML",
    "REPORT_HTML",
    "REPORT_JSON",
    "REPORT_JUNIT",
    "REPORT_SARIF",
    "SUCCESSFUL_JSONL",
    "render_html",
    "to_junit",
    "to_sarif",
    "write_reports",
]


def write_reports(
    report: Report,
    directory: Path,
    *,
    tools: dict[str, list[dict[str, Any]]] | None = None,
    comparison: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Every report format into `directory`; the paths written, by format."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / REPORT_JSON,
        "html": directory / REPORT_HTML,
        "sarif": directory / REPORT_SARIF,
        "junit": directory / REPORT_JUNIT,
        "labelled": directory / SUCCESSFUL_JSONL,
    }
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    paths["html"].write_text(render_html(report, comparison), encoding="utf-8")
    paths["sarif"].write_text(json.dumps(to_sarif(report), indent=2), encoding="utf-8")
    paths["junit"].write_bytes(to_junit(report))
    paths["labelled"].write_text(labelled_jsonl(report.attempts), encoding="utf-8")
    regression = regression_yaml(report.attempts, tools or {})
    if regression:
        paths["regression"] = directory / REGRESSION_YAML
        paths["regression"].write_text(regression, encoding="utf-8")
    if comparison is not None:
        paths["comparison"] = directory / COMPARISON_JSON
        paths["comparison"].write_text(json.dumps(comparison, indent=2), encoding="utf-8")
    return paths
