"""Anomaly scoring: findings -> one score per category -> an action.

Within one detector the strongest finding counts (the classifier scoring ten windows of one prompt is
one opinion, not ten); across detectors the scores combine by noisy-OR, so independent weak signals
(a rule at notice level plus a lukewarm classifier) add up, as CRS anomaly scores do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from vallum.core.policy import CategoryRule
from vallum.core.types import Action, Finding


def category_scores(findings: Iterable[Finding], categories: Iterable[str]) -> dict[str, float]:
    strongest: dict[tuple[str, str], float] = {}
    for f in findings:
        key = (f.category, f.detector)
        if f.score > strongest.get(key, 0.0):
            strongest[key] = f.score
    miss: dict[str, float] = dict.fromkeys(categories, 1.0)
    for (category, _), score in strongest.items():
        miss[category] = miss.get(category, 1.0) * (1.0 - min(max(score, 0.0), 1.0))
    return {category: 1.0 - m for category, m in miss.items()}


def decide(
    scores: dict[str, float], rule_for: Callable[[str], CategoryRule]
) -> tuple[Action, tuple[str, ...]]:
    """The strongest action any category calls for, and the categories that call for it."""
    action = Action.ALLOW
    drivers: list[tuple[Action, str]] = []
    for category, score in scores.items():
        rule = rule_for(category)
        if not rule.enabled:
            continue
        if score >= rule.act_at:
            drivers.append((rule.action, category))
        elif score >= rule.flag_at:
            drivers.append((Action.FLAG, category))
    if drivers:
        action = max((a for a, _ in drivers), key=lambda a: a.rank)
    return action, tuple(sorted(c for a, c in drivers if a is action))
