"""Compliance reports: enabled controls and observed events mapped to a risk framework.

The bundled framework is the OWASP Top 10 for LLM Applications (2025), kept as data in
rules/owasp_llm_2025.yaml: for each risk, the vallum controls that address it (detectors and the
categories and sources they guard, gateway features, and those not available yet) and the event types
that observe it. `build_report` weighs a Policy, the gateway's features and the events of a period
against it; the result renders as JSON (`model_dump(mode="json")`) or Markdown (`render_markdown`).
"""

from vallum.compliance.mapping import ComplianceError, RiskMapping, load_mapping
from vallum.compliance.markdown import render_markdown
from vallum.compliance.observations import ObservedCount
from vallum.compliance.report import ComplianceReport, ControlReport, Observed, RiskReport, build_report

__all__ = [
    "ComplianceError",
    "ComplianceReport",
    "ControlReport",
    "Observed",
    "ObservedCount",
    "RiskMapping",
    "RiskReport",
    "build_report",
    "load_mapping",
    "render_markdown",
]
