"""JUnit XML: one test suite per attack suite, one test case per attempt. A successful attack is a
failure (the defence failed), an endpoint that could not be measured is an error, a defended attack
passes. CI systems that read JUnit show the failures with their evidence.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict

from vallum.redteam.results import Attempt, Report

_MAX_OUT = 4000
# XML 1.0 cannot hold most control characters, whatever the escaping; model output may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _case(parent: ET.Element, attempt: Attempt) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        {"classname": f"vallum.redteam.{attempt.suite}", "name": _clean(attempt.case_id), "time": "0"},
    )
    if attempt.outcome == "succeeded":
        evidence = [e for e in attempt.evidence if e.success]
        message = "; ".join(e.detail for e in evidence) or attempt.reason
        failure = ET.SubElement(
            case,
            "failure",
            {"message": _clean(f"attack succeeded: {message}"), "type": attempt.category or "unmapped"},
        )
        failure.text = _clean("\n".join(f"[{e.check}] {e.detail}: {e.excerpt}" for e in evidence))
    elif attempt.outcome == "error":
        error = ET.SubElement(
            case, "error", {"message": _clean(attempt.error or "no answer"), "type": "TargetError"}
        )
        error.text = _clean(attempt.error or "")
    prompt = next((m.get("text", "") for m in reversed(attempt.conversation) if m.get("role") == "user"), "")
    out = ET.SubElement(case, "system-out")
    out.text = _clean(
        f"goal: {attempt.goal}\noutcome: {attempt.outcome} ({attempt.reason})\n"
        f"prompt:\n{prompt[:_MAX_OUT]}\nresponse:\n{attempt.last_response[:_MAX_OUT]}"
    )


def to_junit(report: Report) -> bytes:
    by_suite: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in report.attempts:
        by_suite[attempt.suite].append(attempt)
    total = report.summary.total
    root = ET.Element(
        "testsuites",
        {
            "name": f"vallum redteam: {_clean(report.target.label)}",
            "tests": str(total.attempts),
            "failures": str(total.succeeded),
            "errors": str(total.errors),
            "time": "0",
        },
    )
    for suite, attempts in by_suite.items():
        counts = report.summary.by_suite[suite]
        element = ET.SubElement(
            root,
            "testsuite",
            {
                "name": suite,
                "tests": str(counts.attempts),
                "failures": str(counts.succeeded),
                "errors": str(counts.errors),
                "skipped": "0",
                "time": "0",
            },
        )
        properties = ET.SubElement(element, "properties")
        ET.SubElement(properties, "property", {"name": "attack_success_rate", "value": f"{counts.rate:.4f}"})
        for attempt in attempts:
            _case(element, attempt)
    ET.indent(root)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml
