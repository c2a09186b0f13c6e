"""What `vallum mcp-proxy` is told: the upstream server and how to treat its tools. YAML or flags.

```yaml
upstream:
  command: [python, weather_server.py]   # a stdio server: the command and its arguments
  # url: http://127.0.0.1:9000/mcp       # or a streamable HTTP server
  # headers: {Authorization: Bearer ...}
  name: weather                          # the key of this server's pins (default: the command or URL)
policy: agent_policy.yaml                # the tool-call firewall's policy (default: the built-in one)
task: Summarise my unread e-mail.        # what the user asked for, when the proxy is told (see below)
pins:
  file: mcp-pins.json                    # approved tool definitions (default: kept in memory only)
  new_tools: trust                       # trust (pin on first sight) | approve (withheld until approved)
  changed_tools: block                   # block (withhold, block calls) | flag (report and go on)
descriptions: hide                       # a poisoned tool: hide (withhold, block calls) | flag
results: sanitize                        # injected tool results: sanitize | block | flag (default:
                                         # the policy's injection.action)
confirm: block                           # calls the firewall would put to a human: block | allow
timeouts: {connect: 30, list_tools: 30, call: 120}
max_results: 200                         # tool results kept as the session's evidence
decision_log: mcp-decisions.jsonl        # every decision with its findings, one JSON line each
```

MCP does not show the proxy what the user asked. `task` stands in for the user's request when it is
known (a proxy started for one job); without it the firewall judges from data flow alone: values from
tool results, injected passages, destinations nobody gave. The host application is the one that asks
its user to approve calls, so the check that a side effect was asked for (`unsupported_action`) is off
when there is no task, and `confirm` decides what happens to calls that would need a human.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vallum.core.policy import parse_yaml_model, read_yaml_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpstreamConfig(_Strict):
    command: tuple[str, ...] | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)  # added to the stdio server's environment
    cwd: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> UpstreamConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give the upstream server as exactly one of `command` (stdio) or `url` (HTTP)")
        if self.command is not None and not self.command:
            raise ValueError("`command` is empty")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"`url` must be an http:// or https:// URL, not {self.url!r}")
        return self

    @property
    def label(self) -> str:
        """The name the server's pins are filed under."""
        if self.name:
            return self.name
        return self.url if self.url is not None else shlex.join(self.command or ())


class PinsConfig(_Strict):
    file: Path | None = None
    new_tools: Literal["trust", "approve"] = "trust"
    changed_tools: Literal["block", "flag"] = "block"


class Timeouts(_Strict):
    connect: float = Field(30.0, gt=0)
    list_tools: float = Field(30.0, gt=0)
    call: float = Field(120.0, gt=0)


class ProxyConfig(_Strict):
    upstream: UpstreamConfig
    policy: Path | None = None
    task: str | None = None
    pins: PinsConfig = Field(default_factory=PinsConfig)
    descriptions: Literal["hide", "flag"] = "hide"
    results: Literal["sanitize", "block", "flag"] | None = None
    confirm: Literal["block", "allow"] = "block"
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_results: int = Field(200, gt=0)
    # A larger result is refused rather than scanned and kept in the session's history.
    max_result_chars: int = Field(4_000_000, gt=0)
    decision_log: Path | None = None  # every decision as a JSON line, beside the log lines on stderr

    @classmethod
    def from_yaml(cls, text: str, *, filename: str = "<mcp proxy config>") -> ProxyConfig:
        return parse_yaml_model(cls, text, filename=filename, kind="mcp proxy config")

    @classmethod
    def from_file(cls, path: str | Path) -> ProxyConfig:
        path = Path(path)
        config = read_yaml_model(cls, path, kind="mcp proxy config")
        # Relative paths in the file are relative to the file, as a reader of the file expects.
        base = path.parent
        updates: dict[str, object] = {}
        if config.policy is not None and not config.policy.is_absolute():
            updates["policy"] = base / config.policy
        if config.decision_log is not None and not config.decision_log.is_absolute():
            updates["decision_log"] = base / config.decision_log
        if config.pins.file is not None and not config.pins.file.is_absolute():
            updates["pins"] = config.pins.model_copy(update={"file": base / config.pins.file})
        return config.model_copy(update=updates) if updates else config
