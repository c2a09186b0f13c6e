"""Comparison: the same campaign against two targets (say the bare model and the model behind vallum),
and what changed: success rates side by side per category and suite, the attacks the second target
stopped and any that got through only there.
"""

from __future__ import annotations

from typing import Any

from vallum.redteam.results import Counts, Report


def _row(key: str, baseline: Counts, target: Counts) -> dict[str, Any]:
    return {
        "key": key,
        "baseline_rate": round(baseline.rate, 4),
        "baseline_succeeded": baseline.succeeded,
        "baseline_measured": baseline.measured,
        "target_rate": round(target.rate, 4),
        "target_succeeded": target.succeeded,
        "target_measured": target.measured,
        "delta": round(target.rate - baseline.rate, 4),
    }


def compare(baseline: Report, target: Report) -> dict[str, Any]:
    rows = [_row("all", baseline.summary.total, target.summary.total)]
    for field in ("by_category", "by_suite"):
        left: dict[str, Counts] = getattr(baseline.summary, field)
        right: dict[str, Counts] = getattr(target.summary, field)
        for key in dict.fromkeys([*left, *right]):
            rows.append(_row(key, left.get(key, Counts()), right.get(key, Counts())))
    before = {a.case_id: a.outcome for a in baseline.attempts}
    after = {a.case_id: a.outcome for a in target.attempts}
    common = [case for case in before if case in after]
    return {
        "baseline": baseline.target.label,
        "target": target.target.label,
        "rows": rows,
        "fixed": [c for c in common if before[c] == "succeeded" and after[c] == "defended"],
        "regressed": [c for c in common if before[c] == "defended" and after[c] == "succeeded"],
        "unmeasured": [c for c in common if "error" in (before[c], after[c])],
    }
