"""The `vallum` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from vallum.errors import VallumError

EXIT_OK, EXIT_BLOCKED, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except VallumError as exc:
        print(f"vallum: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `vallum scan ... | head`: the reader has gone, which is not an error
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("vallum: interrupted; output written so far is kept", file=sys.stderr)
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vallum", description="Runtime security for LLM applications.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)

    scan = commands.add_parser(
        "scan",
        help="scan a text, standard input, or a JSON-lines file",
        description="Scan TEXT (or '-' for standard input) and print the verdict as JSON; exit 1 when "
        'the verdict is block. With --input/--output, scan a JSON-lines file of {"text", "source"} rows.',
    )
    scan.add_argument("text", nargs="?", help="text to scan, or '-' to read standard input")
    scan.add_argument("--source", default="user", help="where the text comes from (default: user)")
    scan.add_argument("--input", type=Path, help="JSON-lines file to scan ('-' for standard input)")
    scan.add_argument(
        "--output", type=Path, help="JSON-lines file for the verdicts ('-' for standard output)"
    )
    scan.add_argument("--policy", type=Path, help="policy YAML file (default: the built-in policy)")
    scan.add_argument(
        "--skip-invalid", action="store_true", help="exit 0 even when some input lines are invalid"
    )
    scan.add_argument("--batch-size", type=int, default=64, help="rows scanned together (default: 64)")
    scan.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    _add_engine_arguments(scan, "scan on a Ray cluster, resumable by shard")
    scan.set_defaults(run=_scan)

    evaluate = commands.add_parser(
        "eval",
        help="measure detection quality on a labelled JSON-lines file",
        description='Rows are {"text", "label": 0|1, "category", "source"?}. Prints recall, '
        "false-positive rate, AUC and TPR at 1%% FPR per category.",
    )
    evaluate.add_argument("labelled", type=Path)
    evaluate.add_argument("--policy", type=Path)
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.set_defaults(run=_eval)

    serve = commands.add_parser(
        "serve",
        help="run the gateway: an OpenAI- and Anthropic-compatible proxy that applies policy",
        description="Run the gateway. Everything beyond the listening address and one upstream comes from "
        "the config file (see examples/gateway.yaml) and VALLUM_* environment variables.",
    )
    serve.add_argument("--host", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 8080)")
    serve.add_argument(
        "--upstream",
        help="base URL of an OpenAI-compatible API serving every model, e.g. http://127.0.0.1:8001/v1",
    )
    serve.add_argument("--config", type=Path, help="gateway config YAML file")
    serve.add_argument("--policy", type=Path, help="policy YAML file for callers without their own policy")
    serve.add_argument("--shadow", action="store_true", default=None, help="record decisions, enforce none")
    serve.set_defaults(run=_serve)

    simulator = commands.add_parser(
        "upstream-sim",
        help="run a deterministic local OpenAI- and Anthropic-compatible LLM for tests and demos",
        description="Echoes the last user message; #sim: directives in it script replies, tool calls and "
        "faults (see the README).",
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8001)
    simulator.add_argument("--script", type=Path, help="YAML file of {match, reply | tool_call} rules")
    simulator.set_defaults(run=_upstream_sim)

    keygen = commands.add_parser(
        "keygen",
        help="make a client API key for the gateway and print it with the digest its config stores",
    )
    keygen.add_argument("--id", default="my-app", help="a name for the key, used in events and logs")
    keygen.set_defaults(run=_keygen)

    database = os.environ.get("VALLUM_DATABASE_URL", "sqlite:///vallum.db")
    db = commands.add_parser("db", help="the database of events, audit trail, policies and keys")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_upgrade = db_commands.add_parser("upgrade", help="create or migrate the tables to the latest schema")
    db_upgrade.add_argument(
        "--db", default=database, help="database URL (default: VALLUM_DATABASE_URL or sqlite:///vallum.db)"
    )
    db_upgrade.set_defaults(run=lambda a: _monitor_commands().run_db_upgrade(a.db))

    events = commands.add_parser("events", help="retention, erasure and key rotation of stored events")
    events_commands = events.add_subparsers(dest="events_command", required=True)
    purge = events_commands.add_parser(
        "purge", help="delete events by age and/or identity (right to erasure)"
    )
    purge.add_argument("--db", default=database)
    purge.add_argument("--older-than-days", type=float)
    purge.add_argument("--tenant")
    purge.add_argument("--user")
    purge.add_argument("--api-key")
    purge.set_defaults(
        run=lambda a: _monitor_commands().run_events_purge(
            a.db, a.older_than_days, a.tenant, a.user, a.api_key
        )
    )
    rotate = events_commands.add_parser(
        "rotate", help="re-encrypt stored text under the first VALLUM_EVENT_KEYS key"
    )
    rotate.add_argument("--db", default=database)
    rotate.set_defaults(run=lambda a: _monitor_commands().run_rotate(a.db))

    audit = commands.add_parser("audit", help="verify and export the tamper-evident audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check the hash chain (and signatures); exit 1 at the first altered, removed or reordered entry",
    )
    verify.add_argument("--file", type=Path, help="a JSONL audit file (default: the database's audit table)")
    verify.add_argument("--db", default=None, help=f"database URL (default: {database})")
    verify.add_argument("--public-key", default=os.environ.get("VALLUM_AUDIT_VERIFY_KEY"))
    verify.add_argument("--anchor", help="SEQ:HASH of a head recorded earlier, to detect a cut-off tail")
    verify.set_defaults(
        run=lambda a: _audit_commands().run_verify(
            a.file, a.db or (None if a.file else database), a.public_key, anchor=a.anchor
        )
    )
    export = audit_commands.add_parser("export", help="write the audit chain as JSON lines")
    export.add_argument("--file", type=Path)
    export.add_argument("--db", default=None)
    export.add_argument("--output", type=Path, required=True)
    export.set_defaults(
        run=lambda a: _audit_commands().run_export(a.file, a.db or (None if a.file else database), a.output)
    )
    audit_keygen = audit_commands.add_parser(
        "keygen", help="make an Ed25519 key pair for signing audit entries"
    )
    audit_keygen.set_defaults(run=lambda a: _audit_commands().run_keygen())

    alerts = commands.add_parser("alerts", help="alert rules")
    alerts_commands = alerts.add_subparsers(dest="alerts_command", required=True)
    alert_test = alerts_commands.add_parser(
        "test", help="show which rules would fire on stored events, delivering nothing"
    )
    alert_test.add_argument("rules", type=Path)
    alert_test.add_argument("--events", type=Path, help="a JSONL events file (the gateway's jsonl sink)")
    alert_test.add_argument("--db", help="or a database URL of the event store")
    alert_test.set_defaults(run=_alerts_test)

    rag = commands.add_parser("rag", help="RAG protection: scan documents before indexing")
    rag_commands = rag.add_subparsers(dest="rag_command", required=True)
    rag_scan = rag_commands.add_parser(
        "scan",
        help="scan documents (text, Markdown, HTML, PDF) for injection, hidden content, PII and secrets",
        description="Exit 0 when every document is clean, 1 when any is blocked or unreadable, 2 on a usage error.",
    )
    rag_scan.add_argument("paths", nargs="+", metavar="PATH", help="files or directories")
    rag_scan.add_argument("--format", choices=["text", "json"], default="text")
    rag_scan.add_argument("--output", type=Path)
    rag_scan.add_argument(
        "--policy", type=Path, help="policy YAML (default: the built-in policy with PII on)"
    )
    _add_engine_arguments(rag_scan, "scan the documents on a Ray cluster, one file per task")
    rag_scan.set_defaults(run=_rag_scan)

    model = commands.add_parser("model", help="scan model files before they are loaded; write an ML-BOM")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    model_scan = model_commands.add_parser(
        "scan",
        help="judge model files and folders without executing anything",
        description="Exit 0 when every file is safe, 1 when any is unsafe or could not be judged, 2 on a usage error.",
    )
    model_scan.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    model_scan.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    model_scan.add_argument("--output", type=Path)
    model_scan.add_argument(
        "--policy", type=Path, help="model-scan policy YAML (examples/model-scan-policy.yaml)"
    )
    _add_engine_arguments(model_scan, "judge the files on a Ray cluster, one file per task")
    model_scan.set_defaults(
        run=lambda a: _supplychain().run_model_scan(
            a.paths, a.format, a.output, a.policy, engine=a.engine, address=a.address, workers=a.workers
        )
    )
    model_bom = model_commands.add_parser(
        "bom", help="write a CycloneDX ML-BOM: each file's hash, format, verdict"
    )
    model_bom.add_argument("path", type=Path)
    model_bom.add_argument("--output", type=Path)
    model_bom.add_argument("--policy", type=Path)
    model_bom.set_defaults(run=lambda a: _supplychain().run_model_bom(a.path, a.output, a.policy))

    agent = commands.add_parser("agent", help="the tool-call firewall for agents")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    check = agent_commands.add_parser(
        "check",
        help="judge the tool calls of OpenAI-format conversations (JSON lines)",
        description='Each input line is {"messages": [...], "tools": [...]} whose last message is the assistant '
        'message with the calls to judge; each output line has "action" (allow | block | confirm), "calls" and '
        '"findings". Exit 2 at the end when any line was invalid (judged block).',
    )
    check.add_argument("--input", type=Path, required=True)
    check.add_argument("--output", type=Path, required=True)
    check.add_argument("--policy", type=Path, help="agent policy YAML (see examples/agent_policy.yaml)")
    check.set_defaults(run=_agent_check)

    from vallum.redteam.cli import configure  # cheap: the heavy imports happen when the command runs

    configure(
        commands.add_parser(
            "redteam",
            help="attack an LLM endpoint with vallum's suites; HTML, JSON, SARIF and JUnit reports",
            description="Run attack suites against an OpenAI- or Anthropic-compatible endpoint (a provider, a "
            "local server, or a vallum gateway); `vallum redteam import-garak REPORT` imports garak's findings.",
        )
    )
    from vallum.mcp_proxy.cli import DESCRIPTION as MCP_PROXY_DESCRIPTION
    from vallum.mcp_proxy.cli import configure as configure_mcp_proxy  # cheap: no mcp import until it runs

    configure_mcp_proxy(
        commands.add_parser(
            "mcp-proxy",
            help="put the tool-call firewall between an MCP client and an MCP server",
            description=MCP_PROXY_DESCRIPTION,
        )
    )
    return parser


def _version() -> str:
    from vallum import __version__

    return f"vallum {__version__}"


def _guard(policy: Path | None) -> Any:
    from vallum.core.guard import Guard

    return Guard(policy)


def _scan(args: argparse.Namespace) -> int:
    if args.input is not None or args.output is not None:
        if args.text is not None:
            raise _usage("give either TEXT or --input/--output, not both")
        if args.input is None or args.output is None:
            raise _usage("--input and --output go together")
        return _scan_file(args)
    if args.text is None:
        raise _usage("nothing to scan: give TEXT, '-' for standard input, or --input/--output")
    from vallum.batch import read_text_arg

    text = read_text_arg(args.text, sys.stdin.buffer)
    verdict = _guard(args.policy).scan(text, args.source)
    print(json.dumps(verdict.to_dict(), ensure_ascii=False, indent=2))
    return EXIT_BLOCKED if verdict.blocked else EXIT_OK


def _scan_file(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        from vallum.batch_ray import run_ray_scan

        return run_ray_scan(
            args.input,
            args.output,
            args.policy,
            args.address,
            workers=args.workers,
            batch_size=max(1, args.batch_size),
            skip_invalid=args.skip_invalid,
            progress=not args.no_progress,
        )
    from contextlib import ExitStack

    from vallum.batch import read_rows, scan_stream

    guard = _guard(args.policy)
    with ExitStack() as stack:
        if str(args.input) == "-":
            source = sys.stdin.buffer
            total = None
        else:
            try:
                source = stack.enter_context(args.input.open("rb"))
            except OSError as exc:
                raise _usage(f"cannot read {args.input}: {exc.strerror}") from exc
            total = args.input.stat().st_size
        if str(args.output) == "-":
            out = sys.stdout
        else:
            try:
                out = stack.enter_context(args.output.open("w", encoding="utf-8"))
            except OSError as exc:
                raise _usage(f"cannot write {args.output}: {exc.strerror}") from exc
        progress = None
        if not args.no_progress and sys.stderr.isatty():
            from tqdm import tqdm

            progress = stack.enter_context(tqdm(total=total, unit="B", unit_scale=True, desc="scanning"))
        report = scan_stream(
            guard,
            read_rows(source),
            out,
            batch_size=max(1, args.batch_size),
            on_progress=progress.update if progress is not None else None,
        )
    for problem in report.invalid:
        print(f"vallum: {args.input}: {problem}", file=sys.stderr)
    summary = ", ".join(f"{n} {a}" for a, n in sorted(report.actions.items())) or "nothing"
    print(
        f"vallum: scanned {report.scanned} of {report.rows} rows ({summary}); {len(report.invalid)} invalid",
        file=sys.stderr,
    )
    return EXIT_USAGE if report.invalid and not args.skip_invalid else EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vallum.batch import read_rows
    from vallum.core.types import Message
    from vallum.evaluation import category_of, quality

    guard = _guard(args.policy)
    try:
        stream = args.labelled.open("rb")
    except OSError as exc:
        raise _usage(f"cannot read {args.labelled}: {exc.strerror}") from exc
    messages: list[tuple[str, int, Message]] = []
    with stream:
        for row, _ in read_rows(stream, strict_source=False):
            label = row.record.get("label")
            if row.message is None or label not in (0, 1):
                problem = row.error or "field 'label' must be 0 or 1"
                print(f"vallum: {args.labelled}: line {row.line}: {problem}", file=sys.stderr)
                continue
            messages.append((category_of(row.record), 1 if label == 1 else 0, row.message))
    if not messages:
        raise _usage(f"{args.labelled} has no valid labelled rows")
    verdicts = guard.scan_batch([m for _, _, m in messages])
    categories = sorted({c for c, label, _ in messages if label == 1}) or ["injection"]
    results = []
    for category in categories:
        ys, scores, flagged = [], [], []
        for (row_category, label, _), verdict in zip(messages, verdicts, strict=True):
            if label == 1 and row_category != category:
                continue  # a positive for another category is neither positive nor negative here
            ys.append(label)
            scores.append(verdict.scores.get(category, 0.0))
            flagged.append(category in verdict.categories)
        results.append(quality(category, ys, scores, flagged))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(f"{'category':<12} {'pos':>6} {'neg':>6} {'recall':>8} {'FPR':>8} {'AUC':>7} {'TPR@1%FPR':>10}")
        for r in results:
            print(
                f"{r.category:<12} {r.positives:>6} {r.negatives:>6} {r.recall:>8.3f} "
                f"{r.false_positive_rate:>8.3f} {r.auc:>7.3f} {r.tpr_at_1pct_fpr:>10.3f}"
            )
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from vallum.gateway.config import GatewayConfig, single_upstream
    from vallum.gateway.server import serve

    overrides: dict[str, object] = {"host": args.host, "port": args.port, "shadow": args.shadow}
    config = GatewayConfig.load(args.config, **overrides)
    changes: dict[str, object] = {}
    if args.upstream:
        # The command-line upstream serves whatever the config file does not route elsewhere.
        upstreams, routes = single_upstream(args.upstream)
        taken = {u.name for u in config.upstreams}
        if "default" in taken:
            raise _usage("--upstream adds an upstream named 'default', which the config file already has")
        changes["upstreams"] = [*config.upstreams, *upstreams]
        changes["routes"] = [*config.routes, *routes]
    if args.policy:
        changes["policies"] = {**config.policies, "default": args.policy}
    if changes:
        config = GatewayConfig.model_validate({**config.model_dump(), **changes})
    if not config.upstreams:
        raise _usage("no upstream: give --upstream URL or list upstreams in --config")
    serve(config)
    return EXIT_OK


def _upstream_sim(args: argparse.Namespace) -> int:
    from vallum.upstream_sim import serve

    print(f"vallum upstream-sim on http://{args.host}:{args.port}/v1", file=sys.stderr)
    serve(args.host, args.port, str(args.script) if args.script else None)
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from vallum.gateway.identity import new_key

    key, digest = new_key()
    print(f"key (give it to the client; it is not stored anywhere): {key}")
    print("config entry:")
    print(f"  - id: {args.id}\n    sha256: {digest}")
    return EXIT_OK


def _monitor_commands() -> Any:
    from vallum.monitor import commands

    return commands


def _audit_commands() -> Any:
    from vallum.audit import cli

    return cli


def _alerts_test(args: argparse.Namespace) -> int:
    from vallum.monitor.alerts import read_events_jsonl, run_alert_test

    if (args.events is None) == (args.db is None):
        raise _usage("give one of --events FILE and --db URL")
    if args.events is not None:
        return run_alert_test(args.rules, read_events_jsonl(args.events))
    from vallum.monitor.store import EventFilter, EventStore

    store = EventStore(args.db)
    try:
        # Oldest first, as the events happened: windows and dedupe depend on the order.
        stored = list(reversed(store.query(EventFilter(), limit=1_000_000)))
    finally:
        store.close()
    return run_alert_test(args.rules, stored)


def _supplychain() -> Any:
    import vallum.supplychain

    return vallum.supplychain


def _agent_check(args: argparse.Namespace) -> int:
    from vallum.agents.cli import run_agent_check

    return run_agent_check(args.input, args.output, args.policy)


def _rag_scan(args: argparse.Namespace) -> int:
    from vallum.rag.cli import run_rag_scan

    return run_rag_scan(
        args.paths,
        args.format,
        args.output,
        args.policy,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
    )


def _add_engine_arguments(command: argparse.ArgumentParser, what_ray_does: str) -> None:
    """--engine, --address and --workers, as `vallum scan` has them."""
    command.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help=f"ray: {what_ray_does} (pip install 'vallum[ray]')",
    )
    command.add_argument(
        "--address", help="with --engine ray: a running cluster's address (default: start one)"
    )
    command.add_argument(
        "--workers", type=int, help="with --engine ray: actors scanning at once (default: one per CPU)"
    )


class _UsageError(VallumError):
    """A command line that asks for something impossible."""


def _usage(message: str) -> VallumError:
    return _UsageError(message)
