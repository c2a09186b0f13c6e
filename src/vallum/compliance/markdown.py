"""The compliance report as Markdown: a summary table, then one section and control table per risk."""

from __future__ import annotations

from datetime import UTC, datetime

from vallum.compliance.report import ComplianceReport, RiskReport

_STATUS = {"covered": "covered", "partial": "partial", "not_covered": "not covered"}
_STATE = {
    "enforced": "enforced",
    "monitoring": "monitoring only",
    "off": "off",
    "not_available": "not available",
}


def render_markdown(report: ComplianceReport) -> str:
    lines = [
        f"# {report.framework} ({report.edition}): vallum compliance report",
        "",
        f"Generated {_when(report.generated_at)} for events from {_when(report.period_start)} to "
        f"{_when(report.period_end)}. Policy `{report.policy}`. Reference: {report.reference}",
        "",
        "Gateway features: "
        + ", ".join(f"{name} {'on' if on else 'off'}" for name, on in report.features.items())
        + ".",
        "",
        f"Covered: {report.summary['covered']}, partial: {report.summary['partial']}, "
        f"not covered: {report.summary['not_covered']}.",
        "",
        "| Risk | Status | Observed | Blocked | Redacted | Flagged | Not enforced |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for risk in report.risks:
        seen = risk.observed
        lines.append(
            f"| {risk.id} {_cell(risk.name)} | {_STATUS[risk.status]} | {seen.events} | {seen.blocked} | "
            f"{seen.redacted} | {seen.flagged} | {seen.not_enforced} |"
        )
    for risk in report.risks:
        lines += ["", *_section(risk)]
    return "\n".join(lines) + "\n"


def _section(risk: RiskReport) -> list[str]:
    lines = [
        f"## {risk.id} {risk.name}: {_STATUS[risk.status]}",
        "",
        risk.summary,
        "",
        "| Control | Role | Kind | State | Note |",
        "| --- | --- | --- | --- | --- |",
    ]
    for control in risk.controls:
        role = "core" if control.core else "supporting"
        lines.append(
            f"| {_cell(control.name)} | {role} | {control.kind} | {_STATE[control.state]} | {_cell(control.note)} |"
        )
    lines += ["", _observations(risk)]
    if risk.recommendations:
        lines += ["", "Recommendations:", "", *(f"- {_cell(note)}" for note in risk.recommendations)]
    return lines


def _observations(risk: RiskReport) -> str:
    seen = risk.observed
    if not risk.observable:
        return "Observed: no event type maps to this risk yet."
    if not seen.events:
        return "Observed: no events in the period."
    types = ", ".join(f"{name} {n}" for name, n in seen.by_type.items())
    shadow = f", {seen.not_enforced} not enforced (shadow mode)" if seen.not_enforced else ""
    return (
        f"Observed: {_events(seen.events)} ({seen.blocked} blocked, {seen.redacted} redacted, "
        f"{seen.flagged} flagged{shadow}); by type: {types}."
    )


def _events(n: int) -> str:
    return "1 event" if n == 1 else f"{n} events"


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "(none)"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: str) -> str:
    """Text safe inside a table cell or list item: pipes escaped, line breaks joined."""
    return " ".join(text.split()).replace("|", "\\|")
