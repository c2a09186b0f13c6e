"""`vallum redteam`: the command-line logic, as functions the main `vallum` command wires in.

    vallum redteam --target URL [--model NAME] [--api openai|anthropic] [--suite NAME ...] [--budget N]
                   [--report DIR] [--fail-above RATE] [--baseline URL] [--judge-url URL ...]
    vallum redteam import-garak REPORT.jsonl [--report DIR] [--fail-above RATE]

Exit status: 0; 1 when --fail-above is given and the attack success rate is above it, or some attempts
could not be measured (unless --allow-errors), or when no attempt at all could be measured.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:  # the rest is imported when a command runs, so building the parser stays cheap
    from vallum.redteam.campaign import Campaign
    from vallum.redteam.catalogue import Suite
    from vallum.redteam.client import Target
    from vallum.redteam.results import Report
    from vallum.redteam.runner import RunOptions

from vallum.redteam.errors import RedTeamError

Api = Literal["openai", "anthropic"]
STATE_FILE = ".redteam-state.jsonl"  # vallum.redteam.state.STATE_FILE

EXIT_OK, EXIT_FAIL = 0, 1
DEFAULT_REPORT_DIR = Path("redteam-report")
_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the redteam options and its import-garak sub-command to `parser` (sets `run` defaults)."""
    parser.add_argument("--target", help="base URL of the endpoint to attack, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument(
        "--model", help="model name sent to the target (default: gpt-4o-mini / claude-3-5-haiku-latest)"
    )
    parser.add_argument(
        "--api", choices=["openai", "anthropic"], default="openai", help="wire format (default: openai)"
    )
    parser.add_argument(
        "--api-key-env",
        help="environment variable holding the target's API key (default: OPENAI_API_KEY or ANTHROPIC_API_KEY)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        default=[],
        metavar="NAME",
        help="built-in suite to run (repeatable; default: all)",
    )
    parser.add_argument(
        "--suite-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="suite YAML file to run (repeatable), e.g. a regression-suite.yaml",
    )
    parser.add_argument(
        "--mutators",
        action="append",
        default=[],
        metavar="CHAIN",
        help="extra mutation chain for every attack, e.g. base64 or leetspeak+spacing (repeatable)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="skip the suites' own mutation chains (--mutators still apply)"
    )
    parser.add_argument("--budget", type=int, help="cap the campaign at N attempts (spread over the suites)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for mutations, canaries and budget sampling (default: 0)"
    )
    parser.add_argument(
        "--report", type=Path, default=DEFAULT_REPORT_DIR, help="report directory (default: redteam-report)"
    )
    parser.add_argument(
        "--fail-above",
        type=float,
        metavar="RATE",
        help="exit 1 when the attack success rate is above RATE (0..1)",
    )
    parser.add_argument(
        "--allow-errors", action="store_true", help="with --fail-above, do not fail on attempts that errored"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="attacks in flight at once (default: 4)")
    parser.add_argument("--rate", type=float, help="at most this many requests per second")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for one answer (default: 60)"
    )
    parser.add_argument(
        "--retries", type=int, default=4, help="retries on 429/5xx/timeouts, with backoff (default: 4)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore the resume state in the report directory"
    )
    parser.add_argument(
        "--baseline", metavar="URL", help="also run the campaign against this target and compare"
    )
    parser.add_argument(
        "--baseline-api", choices=["openai", "anthropic"], help="wire format of --baseline (default: --api)"
    )
    parser.add_argument("--baseline-model", help="model name for --baseline (default: --model)")
    parser.add_argument("--judge-url", help="OpenAI-compatible endpoint of an LLM judge for open-ended goals")
    parser.add_argument(
        "--judge-model", default="gpt-4o-mini", help="the judge's model (default: gpt-4o-mini)"
    )
    parser.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="variable holding the judge's API key"
    )
    parser.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    parser.add_argument(
        "--list", action="store_true", help="list the suites, attacks and mutators, then exit"
    )
    parser.set_defaults(run=_redteam_from_args)
    commands = parser.add_subparsers(dest="redteam_command", metavar="{import-garak}")
    garak = commands.add_parser(
        "import-garak",
        help="turn a garak report.jsonl into vallum's reports (HTML, JSON, SARIF, JUnit)",
        description="Read NVIDIA garak's JSON-lines report and write vallum's reports for its findings.",
    )
    garak.add_argument("garak_report", type=Path, metavar="REPORT.jsonl")
    garak.add_argument(
        "--report", type=Path, help="report directory (default: REPORT.vallum next to the file)"
    )
    garak.add_argument("--fail-above", type=float, metavar="RATE")
    garak.set_defaults(run=_garak_from_args)


def _redteam_from_args(args: argparse.Namespace) -> int:
    return run_redteam(
        args.target,
        model=args.model,
        api=args.api,
        api_key_env=args.api_key_env,
        suites=args.suite,
        suite_files=args.suite_file,
        mutators=args.mutators,
        plain=args.plain,
        budget=args.budget,
        seed=args.seed,
        report_dir=args.report,
        fail_above=args.fail_above,
        allow_errors=args.allow_errors,
        concurrency=args.concurrency,
        rate=args.rate,
        timeout=args.timeout,
        retries=args.retries,
        fresh=args.fresh,
        baseline=args.baseline,
        baseline_api=args.baseline_api,
        baseline_model=args.baseline_model,
        judge_url=args.judge_url,
        judge_model=args.judge_model,
        judge_api_key_env=args.judge_api_key_env,
        progress=False if args.no_progress else None,
        list_only=args.list,
    )


def _garak_from_args(args: argparse.Namespace) -> int:
    return run_import_garak(args.garak_report, report_dir=args.report, fail_above=args.fail_above)


def _key(env: str | None, api: str) -> str | None:
    return os.environ.get(env or _KEY_ENV[api]) or None


def _tools(suites: Sequence[Suite]) -> dict[str, list[dict[str, Any]]]:
    return {s.suite: [t.model_dump() for t in s.tools] for s in suites}


def _list(out: TextIO) -> int:
    from vallum.redteam.catalogue import builtin_suite_names, load_suites
    from vallum.redteam.mutators import mutator_names

    for name in builtin_suite_names():
        [suite] = load_suites([name])
        chains = ", ".join("+".join(c) for c in suite.mutations) or "none"
        print(f"{name}: {suite.description} (mutations: {chains})", file=out)
        for attack in suite.attacks:
            print(f"  {attack.id}  {attack.category}  {attack.name}", file=out)
    print(f"mutators: {', '.join(mutator_names())}", file=out)
    return EXIT_OK


def _print_summary(report: Report, paths: dict[str, Path], out: TextIO) -> None:
    from vallum.redteam.catalogue import OWASP_2025

    total = report.summary.total
    print(f"vallum redteam: {report.target.label}", file=out)
    for key, counts in report.summary.by_category.items():
        name = OWASP_2025.get(key, "")
        print(
            f"  {key:<9} {name:<34} {counts.rate:7.1%}  ({counts.succeeded}/{counts.measured}, {counts.errors} errors)",
            file=out,
        )
    print(
        f"  attack success rate {total.rate:.1%}: {total.succeeded} succeeded, {total.defended} defended, "
        f"{total.errors} errors of {total.attempts} attempts",
        file=out,
    )
    print(f"  reports: {', '.join(str(p) for p in paths.values())}", file=out)


def _verdict(report: Report, fail_above: float | None, allow_errors: bool, out: TextIO) -> int:
    total = report.summary.total
    if total.attempts and not total.measured:
        print("vallum redteam: no attempt could be measured (every one errored); see the report", file=out)
        return EXIT_FAIL
    if fail_above is None:
        return EXIT_OK
    if total.rate > fail_above:
        print(
            f"vallum redteam: FAIL: attack success rate {total.rate:.1%} is above {fail_above:.1%}", file=out
        )
        return EXIT_FAIL
    if total.errors and not allow_errors:
        print(
            f"vallum redteam: FAIL: {total.errors} attempts errored and were not measured (--allow-errors to accept)",
            file=out,
        )
        return EXIT_FAIL
    return EXIT_OK


def _execute(
    campaign: Campaign,
    target: Target,
    directory: Path,
    *,
    options: RunOptions,
    judge_target: Target | None,
    fresh: bool,
) -> Report:
    from vallum.redteam.results import Report, TargetInfo
    from vallum.redteam.runner import run

    attempts = run(
        campaign,
        target,
        options=options,
        judge_target=judge_target,
        state_path=directory / STATE_FILE,
        fresh=fresh,
    )
    info = TargetInfo(url=target.url, api=target.api, model=target.model_name, name=target.name)
    return Report.build(
        info,
        attempts,
        seed=campaign.seed,
        fingerprint=campaign.fingerprint(),
        suites=[s.suite for s in campaign.suites],
    )


def run_redteam(
    target: str | None,
    *,
    model: str | None = None,
    api: Api = "openai",
    api_key_env: str | None = None,
    suites: Sequence[str] = (),
    suite_files: Sequence[str | Path] = (),
    mutators: Sequence[str] = (),
    plain: bool = False,
    budget: int | None = None,
    seed: int = 0,
    report_dir: str | Path = DEFAULT_REPORT_DIR,
    fail_above: float | None = None,
    allow_errors: bool = False,
    concurrency: int = 4,
    rate: float | None = None,
    timeout: float = 60.0,
    retries: int = 4,
    backoff: float = 0.5,
    fresh: bool = False,
    baseline: str | None = None,
    baseline_api: Api | None = None,
    baseline_model: str | None = None,
    judge_url: str | None = None,
    judge_model: str = "gpt-4o-mini",
    judge_api_key_env: str = "OPENAI_API_KEY",
    progress: bool | None = None,
    list_only: bool = False,
    out: TextIO | None = None,
) -> int:
    """Run the campaign, write the reports into `report_dir`, print a summary; the exit status."""
    from vallum.redteam.campaign import build_campaign
    from vallum.redteam.catalogue import load_suites
    from vallum.redteam.client import RetryPolicy, Target
    from vallum.redteam.compare import compare
    from vallum.redteam.reports import write_reports
    from vallum.redteam.runner import RunOptions

    out = out or sys.stdout
    if list_only:
        return _list(out)
    if not target:
        raise RedTeamError("give --target URL (the endpoint to attack), or --list to see the suites")
    if fail_above is not None and not 0 <= fail_above <= 1:
        raise RedTeamError(f"--fail-above takes a rate between 0 and 1, not {fail_above}")
    if budget is not None and budget < 1:
        raise RedTeamError("--budget must be at least 1")
    chosen = load_suites(suites, suite_files)
    campaign = build_campaign(chosen, seed=seed, extra_chains=mutators, plain_only=plain, budget=budget)
    options = RunOptions(
        concurrency=concurrency,
        rate=rate,
        retry=RetryPolicy(retries=retries, backoff_s=backoff),
        progress=progress,
    )
    judge_target = (
        Target(
            judge_url,
            "openai",
            judge_model,
            _key(judge_api_key_env, "openai"),
            timeout_s=timeout,
            max_tokens=64,
        )
        if judge_url
        else None
    )
    directory = Path(report_dir)
    main_target = Target(target, api, model or "", _key(api_key_env, api), timeout_s=timeout)
    comparison = None
    if baseline:
        other_api: Api = baseline_api or api
        bare = Target(
            baseline,
            other_api,
            baseline_model or model or "",
            _key(api_key_env, other_api),
            timeout_s=timeout,
        )
        base_report = _execute(
            campaign, bare, directory / "baseline", options=options, judge_target=judge_target, fresh=fresh
        )
        base_paths = write_reports(base_report, directory / "baseline", tools=_tools(chosen))
        _print_summary(base_report, base_paths, out)
    report = _execute(
        campaign, main_target, directory, options=options, judge_target=judge_target, fresh=fresh
    )
    if baseline:
        comparison = compare(base_report, report)
    paths = write_reports(report, directory, tools=_tools(chosen), comparison=comparison)
    _print_summary(report, paths, out)
    if comparison is not None:
        all_row = comparison["rows"][0]
        print(
            f"  compared with {comparison['baseline']}: {all_row['baseline_rate']:.1%} -> "
            f"{all_row['target_rate']:.1%} ({100 * all_row['delta']:+.1f} points); "
            f"{len(comparison['fixed'])} attacks stopped, {len(comparison['regressed'])} new",
            file=out,
        )
    return _verdict(report, fail_above, allow_errors, out)


def run_import_garak(
    garak_report: str | Path,
    *,
    report_dir: str | Path | None = None,
    fail_above: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Write vallum's reports for a garak report.jsonl; the exit status as for run_redteam."""
    from vallum.redteam.garak import import_garak
    from vallum.redteam.reports import write_reports

    out = out or sys.stdout
    source = Path(garak_report)
    report = import_garak(source)
    directory = (
        Path(report_dir) if report_dir else source.with_name(source.name.removesuffix(".jsonl") + ".vallum")
    )
    paths = write_reports(report, directory)
    _print_summary(report, paths, out)
    return _verdict(report, fail_above, True, out)
