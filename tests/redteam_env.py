"""Shared pieces of the red-team tests: the deliberately weak simulator script and small helpers."""

from __future__ import annotations

from pathlib import Path

from vallum.redteam.results import Attempt, Counts, summarize
from vallum.upstream_sim import Script

ROOT = Path(__file__).resolve().parents[1]
VULNERABLE_SCRIPT = ROOT / "examples" / "redteam" / "vulnerable-sim.yaml"
DATA = Path(__file__).resolve().parent / "data" / "redteam"
GARAK_SAMPLE = DATA / "garak-sample.report.jsonl"


def vulnerable_script() -> Script:
    return Script.load(VULNERABLE_SCRIPT)


def totals(attempts: list[Attempt]) -> Counts:
    return summarize(attempts).total


def outcomes(attempts: list[Attempt]) -> dict[str, str]:
    return {a.case_id: a.outcome for a in attempts}
