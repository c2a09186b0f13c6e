"""The JSON report: {"files": [{"path", "format", "verdict", "findings": [{"rule", "severity", "message",
"location"}]}], "summary": {verdict: count}, "tool": {...}}."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from vallum.supplychain.report import FileReport, FileVerdict


def render_json(reports: Sequence[FileReport], version: str) -> str:
    counts = Counter(r.verdict for r in reports)
    document = {
        "tool": {"name": "vallum", "version": version},
        "files": [r.to_dict() for r in reports],
        "summary": {v.value: counts.get(v, 0) for v in FileVerdict},
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
