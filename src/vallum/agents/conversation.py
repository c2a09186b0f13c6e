"""An OpenAI-format agent conversation, read into typed messages with their trust and their tool calls.

    parse_conversation(messages, tools) -> Conversation

Roles decide trust: system, developer and user messages are trusted (they are what the application and
the user said); tool and function results are untrusted (web pages, e-mails, files, API answers);
assistant text is the model's own and is evidence of nothing. A role nobody knows counts as untrusted
and is reported. The calls to judge are those of the last message, which must be an assistant message
with `tool_calls` (or a legacy `function_call`). Problems that leave something to judge (a tool result
with no matching call, arguments that are not JSON) are recorded, not raised, so that the firewall can
apply the policy's fail mode to them; structures that leave nothing to judge raise `AgentInputError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from vallum.errors import InputError

Json = dict[str, Any]


class AgentInputError(InputError):
    """A conversation is not in the shape `agent check` reads; the message says what is wrong."""


class Trust(StrEnum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    MODEL = "model"


_ROLE_TRUST = {
    "system": Trust.TRUSTED,
    "developer": Trust.TRUSTED,
    "user": Trust.TRUSTED,
    "assistant": Trust.MODEL,
    "tool": Trust.UNTRUSTED,
    "function": Trust.UNTRUSTED,
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str | None
    name: str | None
    arguments: Json | None  # None when the arguments could not be read as a JSON object
    message: int  # index of the assistant message that made the call
    error: str | None = None  # why the call cannot be judged


@dataclass(frozen=True, slots=True)
class ChatMessage:
    index: int
    role: str
    text: str
    trust: Trust
    calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool: str | None = None  # for a tool result: the tool whose call produced it
    call: ToolCall | None = None  # for a tool result: the call that produced it


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: Json = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something malformed about a conversation: `kind` is a stable word, `detail` says what and where."""

    kind: str  # orphan_tool_result | unknown_role | bad_message | bad_tool | invalid_arguments
    detail: str
    message: int | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    messages: tuple[ChatMessage, ...]
    tools: Mapping[str, ToolSpec]
    pending: tuple[ToolCall, ...]
    problems: tuple[Problem, ...]

    def user_request(self) -> str:
        """What the user asked for (all user turns); the system prompt stands in when there is none."""
        user = [m.text for m in self.messages if m.role == "user" and m.text]
        if user:
            return "\n".join(user)
        return "\n".join(m.text for m in self.messages if m.trust is Trust.TRUSTED and m.text)


def parse_conversation(messages: Any, tools: Any = None) -> Conversation:
    if not isinstance(messages, list):
        raise AgentInputError(f'"messages" must be a list of chat messages, not {type(messages).__name__}')
    if not messages:
        raise AgentInputError('"messages" is empty: there is no assistant message with calls to judge')
    problems: list[Problem] = []
    specs = _tools(tools, problems)
    parsed: list[ChatMessage] = []
    calls_by_id: dict[str, ToolCall] = {}
    answered: set[str] = set()
    for index, raw in enumerate(messages):
        if not isinstance(raw, dict):
            raise AgentInputError(f"messages[{index}] must be an object, not {type(raw).__name__}")
        role = raw.get("role")
        if not isinstance(role, str) or not role:
            raise AgentInputError(f'messages[{index}] has no "role"')
        trust = _ROLE_TRUST.get(role)
        if trust is None:
            trust = Trust.UNTRUSTED
            problems.append(Problem("unknown_role", f"messages[{index}] has unknown role {role!r}", index))
        text = _text(raw.get("content"), index, problems)
        if role == "assistant":
            calls = _calls(raw, index, problems)
            for call in calls:
                if call.id is not None:
                    calls_by_id[call.id] = call
            parsed.append(ChatMessage(index, role, text, trust, calls=calls))
        elif role in ("tool", "function"):
            parsed.append(_result(raw, index, text, trust, calls_by_id, answered, problems))
        else:
            parsed.append(ChatMessage(index, role, text, trust))
    last = parsed[-1]
    if last.role != "assistant" or not last.calls:
        raise AgentInputError(
            "the last message must be the assistant message whose tool_calls are to be judged "
            f"(messages[{last.index}] is a {last.role!r} message"
            + (" without tool_calls)" if last.role == "assistant" else ")")
        )
    return Conversation(tuple(parsed), specs, last.calls, tuple(problems))


def _text(content: Any, index: int, problems: list[Problem]) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
                continue
            else:
                parts.append(json.dumps(part, ensure_ascii=False, default=str))
        return "\n".join(parts)
    problems.append(Problem("bad_message", f"messages[{index}].content is a {type(content).__name__}", index))
    return json.dumps(content, ensure_ascii=False, default=str)


def _calls(raw: Json, index: int, problems: list[Problem]) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    tool_calls = raw.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        problems.append(Problem("bad_message", f"messages[{index}].tool_calls is not a list", index))
        tool_calls = [tool_calls]
    for k, entry in enumerate(tool_calls or []):
        where = f"messages[{index}].tool_calls[{k}]"
        if not isinstance(entry, dict):
            calls.append(ToolCall(None, None, None, index, f"{where} is not an object"))
            continue
        call_id = entry.get("id") if isinstance(entry.get("id"), str) else None
        function = entry.get("function")
        if not isinstance(function, dict):
            calls.append(ToolCall(call_id, None, None, index, f'{where} has no "function" object'))
            continue
        calls.append(_call(call_id, function, index, where))
    legacy = raw.get("function_call")
    if isinstance(legacy, dict):
        calls.append(_call(None, legacy, index, f"messages[{index}].function_call"))
    return tuple(calls)


def _call(call_id: str | None, function: Json, index: int, where: str) -> ToolCall:
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return ToolCall(call_id, None, None, index, f"{where} has no function name")
    raw = function.get("arguments")
    if raw is None or raw == "":
        return ToolCall(call_id, name, {}, index)
    if isinstance(raw, dict):
        return ToolCall(call_id, name, raw, index)
    if not isinstance(raw, str):
        return ToolCall(call_id, name, None, index, f"{where}.arguments is a {type(raw).__name__}")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return ToolCall(call_id, name, None, index, f"{where}.arguments is not valid JSON: {exc}")
    if not isinstance(value, dict):
        return ToolCall(call_id, name, None, index, f"{where}.arguments is JSON but not an object")
    return ToolCall(call_id, name, value, index)


def _result(
    raw: Json,
    index: int,
    text: str,
    trust: Trust,
    calls_by_id: dict[str, ToolCall],
    answered: set[str],
    problems: list[Problem],
) -> ChatMessage:
    call_id = raw.get("tool_call_id") if isinstance(raw.get("tool_call_id"), str) else None
    call = calls_by_id.get(call_id) if call_id is not None else None
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    if call is None and raw.get("role") == "tool":
        detail = (
            f"messages[{index}] is a tool result with no tool_call_id"
            if call_id is None
            else f"messages[{index}] answers tool_call_id {call_id!r}, which no earlier assistant message made"
        )
        problems.append(Problem("orphan_tool_result", detail, index))
    elif call_id is not None:
        if call_id in answered:
            problems.append(
                Problem("orphan_tool_result", f"messages[{index}] answers {call_id!r} a second time", index)
            )
        answered.add(call_id)
    tool = call.name if call is not None else name
    return ChatMessage(index, str(raw.get("role")), text, trust, tool_call_id=call_id, tool=tool, call=call)


def _tools(tools: Any, problems: list[Problem]) -> dict[str, ToolSpec]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise AgentInputError(f'"tools" must be a list of tool definitions, not {type(tools).__name__}')
    specs: dict[str, ToolSpec] = {}
    for k, entry in enumerate(tools):
        spec = _tool(entry)
        if spec is None:
            problems.append(Problem("bad_tool", f"tools[{k}] is not a function definition with a name"))
            continue
        specs[spec.name] = spec
    return specs


def _tool(entry: Any) -> ToolSpec | None:
    if not isinstance(entry, dict):
        return None
    inner = entry.get("function")
    function: Json = inner if isinstance(inner, dict) else entry
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None
    description = function.get("description")
    parameters = function.get("parameters", function.get("input_schema"))
    return ToolSpec(
        name,
        description if isinstance(description, str) else "",
        parameters if isinstance(parameters, dict) else {},
    )
