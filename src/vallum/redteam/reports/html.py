"""The HTML report: one self-contained page (inline CSS and SVG, no scripts, nothing fetched).

Prompts and answers are attacker- and model-written text, often made to break things (markup, scripts,
exfiltration images); autoescaping keeps every one of them text on the page, and the page's content
security policy forbids loading anything, so even a missed escape could not call out.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from vallum.redteam.catalogue import OWASP_2025
from vallum.redteam.reports.charts import bar_chart
from vallum.redteam.results import Report


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("vallum.redteam", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda value: f"{100 * float(value):.1f}%"
    return env


def render_html(report: Report, comparison: dict[str, Any] | None = None) -> str:
    summary = report.summary
    charts = [
        bar_chart("Attack success by OWASP category", summary.by_category, owasp=True),
        bar_chart("Attack success by suite", summary.by_suite),
    ]
    if len(summary.by_mutator) > 1:
        charts.append(bar_chart("Attack success by mutation", summary.by_mutator))
    order = {"succeeded": 0, "error": 1, "defended": 2}
    attempts = sorted(report.attempts, key=lambda a: order[a.outcome])
    return (
        _environment()
        .get_template("report.html")
        .render(
            report=report,
            total=summary.total,
            charts=charts,
            attempts=attempts,
            owasp=OWASP_2025,
            comparison=comparison,
        )
    )
