"""The human-readable report of `vallum model scan` (the default --format text)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from vallum.supplychain.report import FileReport, FileVerdict


def render_text(reports: Sequence[FileReport]) -> str:
    lines: list[str] = []
    for report in reports:
        label = report.verdict.value.upper() if report.verdict is not FileVerdict.SAFE else "safe"
        lines.append(f"{label:<11} {report.path}  [{report.format}]")
        for finding in report.findings:
            where = f"{finding.location}: " if finding.location else ""
            lines.append(f"    {finding.severity.name.lower():<8} {finding.rule}  {where}{finding.message}")
    counts = Counter(r.verdict for r in reports)
    summary = ", ".join(f"{counts.get(v, 0)} {v.value}" for v in FileVerdict)
    lines.append(f"{len(reports)} file{'s' if len(reports) != 1 else ''}: {summary}")
    return "\n".join(lines) + "\n"
