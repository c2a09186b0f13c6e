"""SARIF 2.1.0: each attack is a rule, each successful attempt a result (level error), so code-scanning
tools and CI show what got through. Defended attempts are counted in the run's properties; errored ones
are tool execution notifications, so an unmeasured attack never passes silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vallum.redteam.catalogue import OWASP_2025
from vallum.redteam.results import Attempt, Report

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://genai.owasp.org/llm-top-10/"


def _rule(attempt: Attempt) -> dict[str, Any]:
    category = attempt.category or "unmapped"
    tags = ["security", "llm", category, f"suite:{attempt.suite}"]
    return {
        "id": attempt.attack_id,
        "name": attempt.attack_name or attempt.attack_id,
        "shortDescription": {"text": attempt.attack_name or attempt.attack_id},
        "fullDescription": {"text": attempt.goal or attempt.attack_name or attempt.attack_id},
        "help": {
            "text": f"OWASP Top 10 for LLM Applications 2025, {category} {OWASP_2025.get(category, '')}".strip()
        },
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": tags, "owasp": category, "security-severity": "8.0"},
    }


def _result(attempt: Attempt, rule_index: int) -> dict[str, Any]:
    evidence = "; ".join(e.detail for e in attempt.evidence if e.success) or attempt.reason
    chain = "+".join(attempt.mutators) or "plain"
    location: dict[str, Any] = {
        "logicalLocations": [
            {
                "name": attempt.case_id,
                "fullyQualifiedName": f"{attempt.suite}/{attempt.case_id}",
                "kind": "module",
            }
        ]
    }
    if attempt.source:
        path = Path(attempt.source)
        uri = path.as_uri() if path.is_absolute() else path.as_posix()
        location["physicalLocation"] = {"artifactLocation": {"uri": uri}}
    return {
        "ruleId": attempt.attack_id,
        "ruleIndex": rule_index,
        "level": "error",
        "kind": "fail",
        "message": {"text": f"Attack {attempt.case_id} ({chain}) succeeded: {evidence}"},
        "locations": [location],
        "partialFingerprints": {"vallumCase/v1": hashlib.sha256(attempt.case_id.encode()).hexdigest()[:32]},
        "properties": {
            "suite": attempt.suite,
            "owasp": attempt.category or "unmapped",
            "mutators": attempt.mutators,
            "evidence": [e.model_dump() for e in attempt.evidence if e.success],
        },
    }


def to_sarif(report: Report) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    for attempt in report.attempts:
        if attempt.attack_id not in index:
            index[attempt.attack_id] = len(rules)
            rules.append(_rule(attempt))
    results = [_result(a, index[a.attack_id]) for a in report.attempts if a.outcome == "succeeded"]
    notifications = [
        {"level": "error", "message": {"text": f"{a.case_id}: {a.error or 'no answer'}"}}
        for a in report.attempts
        if a.outcome == "error"
    ]
    total = report.summary.total
    invocation: dict[str, Any] = {"executionSuccessful": total.errors == 0}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    driver = {
        "name": "vallum-redteam",
        "version": report.version or "0",
        "informationUri": INFORMATION_URI,
        "rules": rules,
    }
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": driver},
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "target": report.target.label,
                    "attackSuccessRate": round(total.rate, 4),
                    "attempts": total.attempts,
                    "succeeded": total.succeeded,
                    "defended": total.defended,
                    "errors": total.errors,
                },
            }
        ],
    }
