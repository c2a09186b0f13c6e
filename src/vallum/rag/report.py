"""`vallum rag scan` reports: one JSON document, or text for people (one block per document)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from vallum.rag.scanner import DocumentReport

REPORT_VERSION = 1


def summary(reports: Sequence[DocumentReport]) -> dict[str, int]:
    counts = Counter(r.action.value if r.action else "error" for r in reports)
    return {
        "documents": len(reports),
        "blocking": sum(r.blocking for r in reports),
        **{name: counts.get(name, 0) for name in ("allow", "flag", "redact", "block", "error")},
        "hidden_segments": sum(len(r.hidden) for r in reports),
    }


def render_json(reports: Sequence[DocumentReport], policy: str) -> str:
    body = {
        "version": REPORT_VERSION,
        "policy": policy,
        "summary": summary(reports),
        "documents": [r.to_dict() for r in reports],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def render_text(reports: Sequence[DocumentReport], policy: str) -> str:
    lines: list[str] = []
    for report in reports:
        if report.error is not None:
            lines.append(f"{report.path}: ERROR {report.error}")
            continue
        action = report.action.value.upper() if report.action else "ERROR"
        kind = report.format.value if report.format else "?"
        lines.append(
            f"{report.path}: {action} ({kind}, {len(report.findings)} findings, {len(report.hidden)} hidden segments)"
        )
        for found in report.findings:
            f = found.finding
            where = f"hidden ({found.hidden.value}, {found.element})" if found.hidden else "visible"
            label = f"{f.category}/{f.subtype or f.detector}"
            rule = f" [{f.rule_id}]" if f.rule_id else ""
            detail = f' "{found.excerpt}"' if found.excerpt else f" {f.evidence}" if f.evidence else ""
            lines.append(
                f"  {found.location}  {where}  {label}{rule} {f.severity.name.lower()} {f.score:.2f}{detail}"
            )
        if report.hidden:
            lines.append("  hidden content:")
            for segment in report.hidden:
                lines.append(
                    f'    {segment.location}  {segment.reason.value} ({segment.element})  "{segment.preview}"'
                )
        lines.extend(f"  note: {note}" for note in report.notes)
    counts = summary(reports)
    lines.append(
        f"{counts['documents']} documents: {counts['block']} blocked, {counts['redact']} to redact, "
        f"{counts['flag']} flagged, {counts['allow']} clean, {counts['error']} unreadable (policy {policy})"
    )
    return "\n".join(lines) + "\n"
