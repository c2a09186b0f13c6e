"""The compliance report: a policy, the gateway's features and observed events against the OWASP LLM Top 10."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vallum import Policy
from vallum.compliance import (
    ComplianceError,
    ComplianceReport,
    ObservedCount,
    RiskReport,
    build_report,
    load_mapping,
    render_markdown,
)
from vallum.core.detector import available_detectors

OWASP_2025 = {
    "LLM01": "Prompt Injection",
    "LLM02": "Sensitive Information Disclosure",
    "LLM03": "Supply Chain",
    "LLM04": "Data and Model Poisoning",
    "LLM05": "Improper Output Handling",
    "LLM06": "Excessive Agency",
    "LLM07": "System Prompt Leakage",
    "LLM08": "Vector and Embedding Weaknesses",
    "LLM09": "Misinformation",
    "LLM10": "Unbounded Consumption",
}


def risk(report: ComplianceReport, risk_id: str) -> RiskReport:
    return next(r for r in report.risks if r.id == risk_id)


def event(
    phase: str = "input", action: str = "block", *findings: tuple[str, str | None], **fields: Any
) -> dict[str, Any]:
    body = {
        "action": action,
        "categories": sorted({c for c, _ in findings}),
        "findings": [{"detector": "d", "category": c, "subtype": s, "score": 0.9} for c, s in findings],
    }
    return {"id": "e", "time": 1_800_000_000.0, "shadow": False, "code": None, phase: body, **fields}


# ---- the mapping -------------------------------------------------------------------------------------


def test_mapping_lists_the_ten_risks_of_the_2025_edition() -> None:
    mapping = load_mapping()
    assert mapping.edition == "2025"
    assert {r.id: r.name for r in mapping.risks} == OWASP_2025


def test_mapping_names_only_detectors_and_categories_that_exist() -> None:
    installed = set(available_detectors())
    categories = {*Policy().categories, "guard"}
    for entry in load_mapping().risks:
        for control in entry.controls:
            assert control.detector is None or control.detector in installed, control.id
            assert control.category is None or control.category in categories, control.id
        for observation in entry.observe:
            assert observation.category is None or observation.category in categories


def test_invalid_mapping_file_names_the_file_and_the_control(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "version: 1\nframework: F\nedition: '1'\nreference: r\nfeatures: {}\nrisks:\n"
        "  - id: R1\n    name: n\n    summary: s\n    controls:\n"
        "      - {id: limits, name: n, kind: feature, advice: a}\n"
    )
    with pytest.raises(ComplianceError) as err:
        load_mapping(path)
    assert str(path) in str(err.value) and "kind feature needs `feature`" in str(err.value)


# ---- controls and status -----------------------------------------------------------------------------


def test_default_policy_covers_injection_but_not_personal_data() -> None:
    report = build_report(Policy(), {})
    assert risk(report, "LLM01").status == "covered"
    assert risk(report, "LLM07").status == "covered"
    llm02 = risk(report, "LLM02")
    assert llm02.status == "partial"
    assert {c.id: c.state for c in llm02.controls}["pii"] == "off"
    assert any("pii detector" in note for note in llm02.recommendations)
    assert risk(report, "LLM09").status == "not_covered"


def test_disabling_the_injection_detectors_leaves_prompt_injection_not_covered() -> None:
    policy = Policy.from_yaml("detectors: {secrets: {}, leakage: {}, output: {}}")
    llm01 = risk(build_report(policy, {}), "LLM01")
    assert llm01.status == "not_covered"
    assert all(c.state == "off" for c in llm01.controls)
    assert any("injection_classifier" in note for note in llm01.recommendations)


def test_injection_that_is_only_flagged_is_partial() -> None:
    policy = Policy.from_yaml("categories: {injection: {action: flag}}")
    llm01 = risk(build_report(policy, {}), "LLM01")
    assert llm01.status == "partial"
    assert {c.state for c in llm01.controls if c.core} == {"monitoring"}
    assert any("only flags" in note for note in llm01.recommendations)


def test_unscanned_retrieval_source_makes_injection_partial() -> None:
    policy = Policy.from_yaml("sources: {retrieval: {enabled: false}}")
    llm01 = risk(build_report(policy, {}), "LLM01")
    indirect = next(c for c in llm01.controls if c.id == "indirect-injection")
    assert llm01.status == "partial"
    assert indirect.state == "off" and "not scanned on retrieval" in indirect.note


def test_shadow_mode_enforces_no_policy_control() -> None:
    report = build_report(Policy(), {"shadow": True})
    llm01 = risk(report, "LLM01")
    assert llm01.status == "partial"
    assert all(c.state in ("monitoring", "off") for c in llm01.controls)
    assert llm01.recommendations[0].startswith("Shadow mode is on")


def test_rate_limits_and_token_budgets_cover_unbounded_consumption() -> None:
    assert risk(build_report(Policy(), {}), "LLM10").status == "partial"  # the policy's max_chars alone
    both = build_report(Policy(), {"rate_limits": True, "token_budgets": True})
    assert risk(both, "LLM10").status == "covered"


def test_controls_not_available_yet_are_said_so() -> None:
    llm06 = risk(build_report(Policy(), {"tool_call_checks": True}), "LLM06")
    planned = next(c for c in llm06.controls if c.id == "tool-policy")
    assert planned.state == "not_available"
    assert llm06.status == "partial"  # a core control vallum lacks keeps the risk from being covered


def test_unknown_gateway_feature_is_refused() -> None:
    with pytest.raises(ComplianceError, match="rate_limit; known: "):
        build_report(Policy(), {"rate_limit": True})


# ---- observations ------------------------------------------------------------------------------------


def test_leakage_events_count_under_system_prompt_leakage() -> None:
    events = [
        event("output", "block", ("leakage", "canary")),
        event("output", "flag", ("leakage", "prompt_echo")),
    ]
    report = build_report(Policy(), {}, events=events)
    seen = risk(report, "LLM07").observed
    assert (seen.events, seen.blocked, seen.flagged) == (2, 1, 1)
    assert seen.by_type == {"leakage/canary": 1, "leakage/prompt_echo": 1}
    assert risk(report, "LLM01").observed.events == 0


def test_prompt_extraction_counts_under_injection_and_leakage() -> None:
    report = build_report(Policy(), {}, events=[event("input", "block", ("injection", "prompt_extraction"))])
    assert risk(report, "LLM01").observed.blocked == 1
    assert risk(report, "LLM07").observed.blocked == 1


def test_an_event_counts_once_per_risk_with_its_strongest_action() -> None:
    one = event("input", "flag", ("injection", "jailbreak"))
    one["output"] = {
        "action": "block",
        "findings": [{"category": "injection", "subtype": "prompt_injection"}],
    }
    seen = risk(build_report(Policy(), {}, events=[one]), "LLM01").observed
    assert (seen.events, seen.blocked, seen.flagged) == (1, 1, 0)
    assert seen.by_type == {"injection/jailbreak": 1, "injection/prompt_injection": 1}


def test_findings_in_an_allowed_phase_are_not_observations() -> None:
    report = build_report(Policy(), {}, events=[event("input", "allow", ("injection", "jailbreak"))])
    assert risk(report, "LLM01").observed.events == 0


def test_refused_requests_count_under_unbounded_consumption() -> None:
    events = [
        {"id": "r", "time": 1.0, "code": "rate_limited"},
        {"id": "b", "time": 2.0, "code": "budget_exceeded"},
    ]
    seen = risk(build_report(Policy(), {}, events=events), "LLM10").observed
    assert (seen.events, seen.blocked) == (2, 2)
    assert seen.by_type == {"code:rate_limited": 1, "code:budget_exceeded": 1}


def test_shadow_decisions_count_as_not_enforced() -> None:
    events = [event("input", "block", ("secrets", "aws_access_key_id"), shadow=True)]
    seen = risk(build_report(Policy(), {"shadow": True}, events=events), "LLM02").observed
    assert (seen.blocked, seen.not_enforced) == (1, 1)


def test_pre_aggregated_counts_add_up_per_risk() -> None:
    counts = [
        ObservedCount("block", 7, category="injection", subtype="jailbreak"),
        ObservedCount("flag", 3, category="injection", subtype="prompt_extraction"),
        ObservedCount("redact", 5, category="pii", subtype="email"),
        ObservedCount("block", 2, code="overloaded"),
    ]
    report = build_report(Policy(), {}, counts=counts, period=(1_800_000_000.0, 1_800_086_400.0))
    llm01 = risk(report, "LLM01").observed
    assert (llm01.events, llm01.blocked, llm01.flagged) == (10, 7, 3)
    assert risk(report, "LLM07").observed.flagged == 3
    assert risk(report, "LLM02").observed.redacted == 5
    assert risk(report, "LLM10").observed.events == 2
    assert (report.period_start, report.period_end) == (1_800_000_000.0, 1_800_086_400.0)


def test_events_and_counts_together_are_refused() -> None:
    with pytest.raises(ComplianceError, match="not both"):
        build_report(Policy(), {}, events=[], counts=[])


def test_not_covered_risk_with_observations_recommends_action() -> None:
    policy = Policy.from_yaml("detectors: {secrets: {}}")
    events = [
        event("input", "block", ("injection", "jailbreak"))
    ]  # from a policy that still had the detector
    llm01 = risk(build_report(policy, {}, events=events), "LLM01")
    assert llm01.status == "not_covered"
    assert any("observed (1) while no control is in force" in note for note in llm01.recommendations)


# ---- renderings --------------------------------------------------------------------------------------


def test_json_rendering_round_trips() -> None:
    events = [
        event("input", "block", ("injection", "jailbreak")),
        event("output", "redact", ("pii", "email")),
    ]
    report = build_report(Policy(), {"rate_limits": True}, events=events, now=1_800_000_100.0)
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert ComplianceReport.model_validate(data) == report
    assert data["summary"] == {"covered": 3, "partial": 5, "not_covered": 2}
    assert data["period_start"] == 1_800_000_000.0 and data["policy"] == Policy().label
    assert data["risks"][0]["observed"]["by_type"] == {"injection/jailbreak": 1}


def test_markdown_has_a_summary_and_a_control_table_per_risk() -> None:
    events = [event("output", "block", ("leakage", "canary"))]
    text = render_markdown(build_report(Policy(), {}, events=events, now=1_800_000_100.0))
    assert text.startswith("# OWASP Top 10 for LLM Applications (2025): vallum compliance report")
    assert "from 2027-01-15 08:00:00 UTC to 2027-01-15 08:00:00 UTC" in text
    assert text.count("\n## LLM") == 10
    assert text.count("| Control | Role | Kind | State | Note |") == 10
    assert "| LLM07 System Prompt Leakage | covered | 1 | 1 | 0 | 0 | 0 |" in text
    assert "## LLM09 Misinformation: not covered" in text
    assert "| Grounding and fact checks of answers | core | planned | not available |" in text
    assert "Observed: 1 event (1 blocked, 0 redacted, 0 flagged); by type: leakage/canary 1." in text
    assert "Observed: no event type maps to this risk yet." in text
