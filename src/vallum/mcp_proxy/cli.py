"""`vallum mcp-proxy`: the command-line logic, as functions the main `vallum` command wires in.

    vallum mcp-proxy --upstream-command "python server.py" | --upstream-url URL | --config mcp-proxy.yaml
                     [--listen stdio|http --host H --port N] [--policy agent_policy.yaml] [--task TEXT]
                     [--pins FILE] [--new-tools trust|approve] [--approve] ...

Over stdio (the default) the proxy is what an MCP host launches in place of the server; over HTTP it
serves streamable HTTP at http://HOST:PORT/mcp. `--approve` lists the upstream's tools, pins each one as
it is now, prints what changed, and exits. Flags override the values of `--config`.
Exit status: 0; 2 for a usage error (bad flags, config or policy, an upstream that cannot be reached
for --approve).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from vallum.errors import PolicyError, VallumError

EXIT_OK = 0
DEFAULT_PORT = 8765
DESCRIPTION = (
    "Put vallum between an MCP client and an MCP server (stdio or streamable HTTP): tools whose descriptions "
    "carry instructions or that changed after approval are withheld, every call goes through the tool-call "
    "firewall, and tool results are scanned for injections. --approve pins the server's tools and exits."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the mcp-proxy options to `parser` (sets the `run` default)."""
    target = parser.add_argument_group("upstream server (one of these, or --config)")
    target.add_argument(
        "--upstream-command", metavar="CMD", help='the stdio MCP server to start, e.g. "python server.py"'
    )
    target.add_argument(
        "--upstream-url", metavar="URL", help="a streamable HTTP MCP server, e.g. http://host/mcp"
    )
    target.add_argument(
        "--upstream-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="HTTP header sent to --upstream-url (repeatable)",
    )
    target.add_argument("--name", help="the server's name in the pin file (default: the command or URL)")
    parser.add_argument("--config", type=Path, help="proxy config YAML (see examples/mcp-proxy.yaml)")
    serve = parser.add_argument_group("serving")
    serve.add_argument("--listen", choices=["stdio", "http"], default="stdio", help="default: stdio")
    serve.add_argument("--host", default="127.0.0.1", help="with --listen http (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"with --listen http (default: {DEFAULT_PORT})"
    )
    judge = parser.add_argument_group("judgement")
    judge.add_argument("--policy", type=Path, help="agent policy YAML (see examples/agent_policy.yaml)")
    judge.add_argument(
        "--task", help="what the user asked for, when known; without it no call is judged against it"
    )
    judge.add_argument("--pins", type=Path, help="pin file of approved tool definitions (default: in memory)")
    judge.add_argument(
        "--new-tools", choices=["trust", "approve"], help="trust on first use (default) or approve"
    )
    judge.add_argument("--changed-tools", choices=["block", "flag"], help="a tool changed after approval")
    judge.add_argument("--descriptions", choices=["hide", "flag"], help="a poisoned tool description")
    judge.add_argument("--results", choices=["sanitize", "block", "flag"], help="an injected tool result")
    judge.add_argument(
        "--confirm", choices=["block", "allow"], help="a call the firewall would ask a person about"
    )
    judge.add_argument("--connect-timeout", type=float, metavar="S", help="seconds to start the upstream")
    judge.add_argument("--call-timeout", type=float, metavar="S", help="seconds a tool call may take")
    judge.add_argument(
        "--decision-log", type=Path, metavar="FILE", help="append every decision as a JSON line"
    )
    parser.add_argument(
        "--approve", action="store_true", help="pin every upstream tool as it is now (needs --pins) and exit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision, not only refusals")
    parser.set_defaults(run=run_from_args)


def config_from_args(args: argparse.Namespace) -> Any:
    """The ProxyConfig that `--config` and the flags describe (flags win)."""
    from vallum.mcp_proxy.config import ProxyConfig

    base: dict[str, Any] = (
        ProxyConfig.from_file(args.config).model_dump(exclude_unset=True) if args.config is not None else {}
    )
    upstream: dict[str, Any] = dict(base.get("upstream") or {})
    if args.upstream_command is not None or args.upstream_url is not None:
        upstream.pop("command", None)
        upstream.pop("url", None)
    if args.upstream_command is not None:
        try:
            upstream["command"] = shlex.split(args.upstream_command)
        except ValueError as exc:
            raise PolicyError(f"--upstream-command cannot be split into words: {exc}") from exc
    if args.upstream_url is not None:
        upstream["url"] = args.upstream_url
    if args.upstream_header:
        upstream["headers"] = {**upstream.get("headers", {}), **_headers(args.upstream_header)}
    if args.name is not None:
        upstream["name"] = args.name
    if not upstream.get("command") and not upstream.get("url"):
        raise PolicyError("say which server to protect: --upstream-command, --upstream-url or --config")
    fields: dict[str, Any] = {**base, "upstream": upstream}
    for flag, key in (("policy", "policy"), ("task", "task"), ("descriptions", "descriptions")):
        if getattr(args, flag) is not None:
            fields[key] = getattr(args, flag)
    for flag in ("results", "confirm", "decision_log"):
        if getattr(args, flag) is not None:
            fields[flag] = getattr(args, flag)
    pins = dict(fields.get("pins") or {})
    for flag, key in (("pins", "file"), ("new_tools", "new_tools"), ("changed_tools", "changed_tools")):
        if getattr(args, flag) is not None:
            pins[key] = getattr(args, flag)
    fields["pins"] = pins
    timeouts = dict(fields.get("timeouts") or {})
    for flag, key in (("connect_timeout", "connect"), ("call_timeout", "call")):
        if getattr(args, flag) is not None:
            timeouts[key] = getattr(args, flag)
    fields["timeouts"] = timeouts
    try:
        return ProxyConfig.model_validate(fields)
    except ValueError as exc:
        raise PolicyError(f"invalid mcp-proxy settings: {exc}") from exc


def run_from_args(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    logging.basicConfig(
        stream=sys.stderr, format="vallum mcp-proxy: %(levelname)s %(message)s", level=logging.WARNING
    )
    logging.getLogger("vallum.mcp_proxy").setLevel(logging.INFO if args.verbose else logging.WARNING)
    if args.approve:
        return run_approve(config)
    return run_proxy(config, listen=args.listen, host=args.host, port=args.port)


def run_proxy(
    config: Any, *, listen: str = "stdio", host: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> int:
    import anyio

    proxy = _proxy_class()(config)
    if listen == "stdio":
        anyio.run(proxy.serve_stdio)
        return EXIT_OK
    import uvicorn

    print(f"vallum mcp-proxy: serving {config.upstream.label} at http://{host}:{port}/mcp", file=sys.stderr)
    uvicorn.run(proxy.http_app(host=host), host=host, port=port, log_level="warning")
    return EXIT_OK


def run_approve(config: Any) -> int:
    """Pin the upstream's tools as they are now; print one line per tool and what the scanner found."""
    import anyio

    from vallum.mcp_proxy.server import McpProxy

    if config.pins.file is None:
        raise PolicyError(
            "--approve writes the pin file: give it with --pins FILE (or pins.file in --config)"
        )
    proxy = McpProxy(config)

    async def approve() -> list[Any]:
        async with proxy.connected():
            return await proxy.approve()

    verdicts = anyio.run(approve)
    for verdict in verdicts:
        state = verdict.pin.state.value if verdict.pin is not None else "new"
        was = {"pinned": "unchanged", "new": "pinned (new)", "changed": "re-pinned (changed)"}[state]
        print(f"{verdict.name}: {was}")
        for finding in verdict.findings:
            print(f"  warning: [{finding.rule} {finding.name}] {finding.message}")
    print(f"vallum mcp-proxy: {len(verdicts)} tools of {config.upstream.label} pinned in {config.pins.file}")
    return EXIT_OK


def _proxy_class() -> Any:
    try:
        from vallum.mcp_proxy.server import McpProxy
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("mcp", "mcp_types"):
            raise VallumError("vallum mcp-proxy needs the MCP SDK: pip install 'vallum[mcp]'") from exc
        raise
    return McpProxy


def _headers(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise PolicyError(f"--upstream-header must be 'NAME: VALUE', not {value!r}")
        out[name.strip()] = rest.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m vallum.mcp_proxy`: the same command without the rest of the `vallum` CLI."""
    parser = argparse.ArgumentParser(prog="vallum mcp-proxy", description=DESCRIPTION)
    configure(parser)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except VallumError as exc:
        print(f"vallum: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
