"""Red teaming: run attack suites against any OpenAI- or Anthropic-compatible endpoint and report.

>>> from vallum.redteam import build_campaign, load_suites, run, Target, Report
>>> campaign = build_campaign(load_suites(["prompt-extraction"]), seed=7, budget=20)
>>> attempts = run(campaign, Target("http://127.0.0.1:8080/v1", model="gpt-4o-mini"))  # doctest: +SKIP

Modules, one job each: `catalogue` (suites as YAML data), `mutators` (composable rewrites), `campaign`
(concrete cases for a seed), `wire` and `client` (the two APIs, retries and backoff), `pacing`,
`judges` and `llm_judge` (verdicts with evidence), `runner` (concurrency, resume, progress), `state`,
`results` (the report model), `reports` (HTML, JSON, SARIF, JUnit), `compare`, `export` (labelled JSONL
and regression suites), `garak` (import garak's report) and `cli`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562), so that `vallum --help` and the parser's set-up stay fast.
_EXPORTS = {
    "Attack": "catalogue",
    "Attempt": "results",
    "Campaign": "campaign",
    "Case": "campaign",
    "CatalogueError": "errors",
    "Evidence": "results",
    "Judge": "judges",
    "RedTeamError": "errors",
    "Report": "results",
    "RetryPolicy": "client",
    "RunOptions": "runner",
    "StateError": "errors",
    "Suite": "catalogue",
    "Target": "client",
    "TargetError": "errors",
    "build_campaign": "campaign",
    "builtin_suite_names": "catalogue",
    "compare": "compare",
    "configure": "cli",
    "get_mutator": "mutators",
    "import_garak": "garak",
    "load_report": "results",
    "load_suite_file": "catalogue",
    "load_suites": "catalogue",
    "mutator_names": "mutators",
    "run": "runner",
    "run_async": "runner",
    "run_import_garak": "cli",
    "run_redteam": "cli",
    "summarize": "results",
    "write_reports": "reports",
}
__all__ = [
    "Attack",
    "Attempt",
    "Campaign",
    "Case",
    "CatalogueError",
    "Evidence",
    "Judge",
    "RedTeamError",
    "Report",
    "RetryPolicy",
    "RunOptions",
    "StateError",
    "Suite",
    "Target",
    "TargetError",
    "build_campaign",
    "builtin_suite_names",
    "compare",
    "configure",
    "get_mutator",
    "import_garak",
    "load_report",
    "load_suite_file",
    "load_suites",
    "mutator_names",
    "run",
    "run_async",
    "run_import_garak",
    "run_redteam",
    "summarize",
    "write_reports",
]

if TYPE_CHECKING:
    from vallum.redteam.campaign import Campaign, Case, build_campaign
    from vallum.redteam.catalogue import Attack, Suite, builtin_suite_names, load_suite_file, load_suites
    from vallum.redteam.cli import configure, run_import_garak, run_redteam
    from vallum.redteam.client import RetryPolicy, Target
    from vallum.redteam.compare import compare
    from vallum.redteam.errors import CatalogueError, RedTeamError, StateError, TargetError
    from vallum.redteam.garak import import_garak
    from vallum.redteam.judges import Judge
    from vallum.redteam.mutators import get_mutator, mutator_names
    from vallum.redteam.reports import write_reports
    from vallum.redteam.results import Attempt, Evidence, Report, load_report, summarize
    from vallum.redteam.runner import RunOptions, run, run_async


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vallum.redteam' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vallum.redteam.{module}"), name)
