"""The proxy's judgement, apart from any transport: which tools to show, which calls to run, what results say.

    gate = ToolGate(config)
    listing = gate.review(tools)                # MCP tool definitions (JSON) -> the ones to show, and why not
    ticket = gate.authorise(name, arguments)    # the tool-call firewall on the session so far
    screened = gate.screen(ticket, result)      # tool result (JSON) -> scanned, sanitised or withheld

A tool is withheld from listings, and its calls blocked, when its definition is poisoned (poisoning.py),
when it changed since it was approved, or when it is new and new tools need approval (pins.py). Calls go
through `ToolFirewall` with the transcript of the session (vallum.agents.transcript); a call the firewall cannot
judge gets the policy's fail mode. Results are scanned for injections and sanitised, withheld or only
flagged. Every decision is logged (and written to the decision log, when there is one) with its findings.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vallum.agents.findings import AgentFinding, Effect
from vallum.agents.firewall import ToolFirewall
from vallum.agents.policy import AgentPolicy
from vallum.agents.tool_path import ResultAction, Ticket, ToolPath, as_flag
from vallum.mcp_proxy.config import ProxyConfig
from vallum.mcp_proxy.pins import PinCheck, PinState, PinStore
from vallum.mcp_proxy.poisoning import DescriptionScanner, mcp_finding

log = logging.getLogger("vallum.mcp_proxy")

META_KEY = "vallum/decision"  # where results carry the proxy's decision, in the MCP `_meta` of a result


@dataclass(frozen=True, slots=True)
class ToolVerdict:
    name: str
    shown: bool
    findings: tuple[AgentFinding, ...]
    pin: PinCheck | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "tool": self.name,
            "shown": self.shown,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.pin is not None:
            out["pin"] = {
                "state": self.pin.state.value,
                "sha256": self.pin.digest,
                "approved": self.pin.pinned,
            }
        return out


@dataclass(frozen=True, slots=True)
class Listing:
    tools: tuple[dict[str, Any], ...]  # the definitions to show
    verdicts: tuple[ToolVerdict, ...]  # one per tool the server listed


@dataclass(frozen=True, slots=True)
class Screened:
    result: dict[str, Any]  # the CallToolResult to give the client (JSON)
    action: ResultAction
    findings: tuple[AgentFinding, ...] = field(default=())


class ToolGate:
    def __init__(
        self,
        config: ProxyConfig,
        firewall: ToolFirewall | None = None,
        *,
        pins: PinStore | None = None,
        scanner: DescriptionScanner | None = None,
    ) -> None:
        self.config = config
        if firewall is None:
            firewall = ToolFirewall(
                AgentPolicy.from_file(config.policy) if config.policy is not None else None
            )
        self.path = ToolPath(
            firewall,
            task=config.task,
            results=config.results,
            confirm=config.confirm,
            max_results=config.max_results,
        )
        self.pins = pins if pins is not None else PinStore(config.pins.file, config.upstream.label)
        self.scanner = scanner or DescriptionScanner(
            firewall.guard, fail_closed=firewall.policy.fail_mode != "open"
        )
        self._lock = threading.Lock()
        self._shown: dict[str, dict[str, Any]] = {}
        self._withheld: dict[str, ToolVerdict] = {}
        self._decision_log = config.decision_log

    # ---- listings --------------------------------------------------------------------------------------

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._shown or name in self._withheld

    def review(self, tools: list[dict[str, Any]]) -> Listing:
        """Which of a server's tools to show; pins new ones when new tools are trusted on first sight."""
        shown: list[dict[str, Any]] = []
        verdicts: list[ToolVerdict] = []
        for tool in tools:
            verdict = self._review_one(tool)
            verdicts.append(verdict)
            if verdict.shown:
                shown.append(tool)
        with self._lock:
            self._shown = {str(t["name"]): t for t in shown}
            self._withheld = {v.name: v for v in verdicts if not v.shown}
        for verdict in verdicts:
            if verdict.findings:
                self._record("tool", verdict.to_dict(), warn=not verdict.shown)
        return Listing(tuple(shown), tuple(verdicts))

    def _review_one(self, tool: dict[str, Any]) -> ToolVerdict:
        name = str(tool.get("name"))
        findings = list(self.scanner.scan(tool))
        poisoned = any(f.effect is Effect.BLOCK for f in findings)
        hide = poisoned and self.config.descriptions == "hide"
        if not hide:
            findings = (
                [as_flag(f) if f.effect is Effect.BLOCK else f for f in findings] if poisoned else findings
            )
        pin = self.pins.check(tool)
        if pin.state is PinState.CHANGED:
            block = self.config.pins.changed_tools == "block"
            findings.append(
                mcp_finding(
                    "pin_changed",
                    Effect.BLOCK if block else Effect.FLAG,
                    f"server {self.config.upstream.label!r} changed tool {name!r} after it was approved "
                    f"(pinned sha256 {(pin.pinned or '')[:12]}, now {pin.digest[:12]})"
                    + ("; withheld until approved (vallum mcp-proxy --approve)" if block else ""),
                    value=pin.digest,
                    kind="tool_definition",
                )
            )
            self.pins.hold(tool)
            hide = hide or block
        elif pin.state is PinState.NEW and not hide:
            if self.config.pins.new_tools == "approve":
                findings.append(
                    mcp_finding(
                        "unapproved_tool",
                        Effect.BLOCK,
                        f"tool {name!r} of server {self.config.upstream.label!r} has not been approved "
                        "(pins.new_tools is approve; vallum mcp-proxy --approve)",
                        value=pin.digest,
                        kind="tool_definition",
                    )
                )
                self.pins.hold(tool)
                hide = True
            else:
                self.pins.approve(tool)
        return ToolVerdict(name, not hide, tuple(findings), pin)

    def approve(self, tools: list[dict[str, Any]]) -> list[ToolVerdict]:
        """Pin every definition as it is now (the `--approve` command); returns what each tool was."""
        verdicts = []
        for tool in tools:
            before = self.pins.check(tool)
            findings = self.scanner.scan(tool)
            self.pins.approve(tool)
            verdicts.append(ToolVerdict(str(tool.get("name")), True, findings, before))
        return verdicts

    # ---- calls -----------------------------------------------------------------------------------------

    def authorise(self, name: str, arguments: Mapping[str, Any] | None) -> Ticket:
        with self._lock:
            shown = dict(self._shown)
            withheld = self._withheld.get(name)
        if name in shown:
            ticket = self.path.authorise(name, arguments, [_openai_tool(t) for t in shown.values()])
        else:
            if withheld is not None:
                reasons = [f for f in withheld.findings if f.effect is Effect.BLOCK]
                message = f"tool {name!r} is withheld by the proxy: " + "; ".join(f.message for f in reasons)
            else:
                message = f"server {self.config.upstream.label!r} offers no tool named {name!r}"
            finding = mcp_finding("hidden_tool", Effect.BLOCK, message)
            ticket = self.path.refuse(self.path.transcript.next_call_id(), name, arguments or {}, finding)
        self._record("call", ticket.to_dict(), warn=not ticket.forwarded)
        return ticket

    def refusal(self, ticket: Ticket) -> dict[str, Any]:
        """The error result a client gets for a call that was not forwarded."""
        return {
            "content": [{"type": "text", "text": ticket.explain()}],
            "isError": True,
            "_meta": {META_KEY: ticket.to_dict()},
        }

    def failure(self, ticket: Ticket, why: str) -> dict[str, Any]:
        """The error result a client gets when the server did not answer properly; logged as a finding."""
        finding = mcp_finding("upstream_failure", Effect.BLOCK, why)
        self._record(
            "result", {"tool": ticket.tool, "id": ticket.call_id, "findings": [finding.to_dict()]}, warn=True
        )
        return {
            "content": [{"type": "text", "text": f"vallum: the call to {ticket.tool!r} failed: {why}"}],
            "isError": True,
            "_meta": {META_KEY: {"action": "failed", "findings": [finding.to_dict()]}},
        }

    # ---- results ---------------------------------------------------------------------------------------

    def screen(self, ticket: Ticket, result: Mapping[str, Any]) -> Screened:
        """Scan a forwarded call's result, record it as evidence, and give what the client may see."""
        clean, findings, action = self.path.screen(ticket, list(_texts(result)))
        if not findings:
            return Screened(dict(result), action)
        if action == "withheld":
            text = (
                f"vallum withheld the result of {ticket.tool!r}: it carries a prompt injection "
                f"({'; '.join(f.message for f in findings)})"
            )
            screened: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
        elif action == "sanitized":
            screened = _sanitized(result, clean)
        else:
            screened = dict(result)
        meta = dict(screened.get("_meta") or {})
        meta[META_KEY] = {"action": action, "findings": [f.to_dict() for f in findings]}
        screened["_meta"] = meta
        self._record("result", {"tool": ticket.tool, "id": ticket.call_id, **meta[META_KEY]}, warn=True)
        return Screened(screened, action, findings)

    # ---- the decision log ------------------------------------------------------------------------------

    def _record(self, kind: str, body: dict[str, object], *, warn: bool) -> None:
        event = {"event": kind, "server": self.config.upstream.label, **body}
        line = json.dumps(event, ensure_ascii=False, default=str)
        log.log(logging.WARNING if warn else logging.INFO, "%s", line)
        if self._decision_log is not None:
            _append(self._decision_log, line)


_log_lock = threading.Lock()


def _append(path: Path, line: str) -> None:
    try:
        with _log_lock, path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
    except OSError as exc:  # the decision was made and logged; a full disk must not turn it into a crash
        log.error("cannot write the decision log %s: %s", path, exc.strerror)


def _openai_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.get("name"),
            "description": tool.get("description") or "",
            "parameters": tool.get("inputSchema") or {},
        },
    }


_LINK_FIELDS = ("name", "title", "description")
_KEY = "#key"  # marks the path of a key (rather than of its value) in structured content


def _texts(result: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The texts of a tool result with where each sits: content[0].text, structuredContent.items[2].body."""
    content = result.get("content")
    for i, item in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(item, Mapping):
            continue
        if item.get("type") == "text" and isinstance(item.get("text"), str):
            yield f"content[{i}].text", item["text"]
        resource = item.get("resource")
        if (
            item.get("type") == "resource"
            and isinstance(resource, Mapping)
            and isinstance(resource.get("text"), str)
        ):
            yield f"content[{i}].resource.text", resource["text"]
        if item.get("type") == "resource_link":  # its name and description reach the model too
            for name in _LINK_FIELDS:
                if isinstance(item.get(name), str):
                    yield f"content[{i}].{name}", item[name]
    structured = result.get("structuredContent")
    if structured is not None:
        yield from _leaves(structured, "structuredContent")


def _leaves(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if value.strip():
            yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and key.strip():  # a key is text the model reads as much as a value
                yield f"{path}.{key}{_KEY}", key
            yield from _leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")


def _sanitized(result: Mapping[str, Any], clean: Mapping[str, str]) -> dict[str, Any]:
    """The result with the texts at the paths of `clean` replaced by their sanitised forms."""
    out: dict[str, Any] = json.loads(json.dumps(result))  # a deep copy of plain JSON
    content = out.get("content")
    for i, item in enumerate(content if isinstance(content, list) else ()):
        if not isinstance(item, dict):
            continue
        if f"content[{i}].text" in clean:
            item["text"] = clean[f"content[{i}].text"]
        if f"content[{i}].resource.text" in clean:
            item["resource"]["text"] = clean[f"content[{i}].resource.text"]
        for name in _LINK_FIELDS:
            if f"content[{i}].{name}" in clean:
                item[name] = clean[f"content[{i}].{name}"]
    if "structuredContent" in out:
        out["structuredContent"] = _replace_leaves(out["structuredContent"], "structuredContent", clean)
    return out


def _replace_leaves(value: Any, path: str, clean: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return clean.get(path, value)
    if isinstance(value, dict):
        return {
            clean.get(f"{path}.{key}{_KEY}", key): _replace_leaves(item, f"{path}.{key}", clean)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_replace_leaves(item, f"{path}[{i}]", clean) for i, item in enumerate(value)]
    return value
