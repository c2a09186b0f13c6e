"""Where the text lives in OpenAI and Anthropic request and response bodies, and where it came from.

A `Slot` is one piece of text inside a parsed JSON body, with the source that decides how it is judged
and a way to write a redacted version back in place. Everything the client or the model says is a slot:
every message (not only the last: consecutive turns are a known way around input checks), every text
part of multi-part content, tool results, and the arguments of tool calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from vallum.core.types import Source

Json = dict[str, Any]

# Roles whose text the client supplies. A forged assistant turn is a known jailbreak (many-shot), so
# earlier assistant turns in a request are judged as the client's words, not trusted as model output.
_ROLE_SOURCE = {
    "system": Source.SYSTEM,
    "developer": Source.SYSTEM,
    "user": Source.USER,
    "assistant": Source.USER,
    "tool": Source.TOOL_RESULT,
    "function": Source.TOOL_RESULT,
}


@dataclass(slots=True)
class Slot:
    source: Source
    text: str
    write: Callable[[str], None]
    where: str  # a JSON path, for events and error details


class Unscannable(ValueError):
    """Part of a body holds content that cannot be read as text (token ids), so it cannot be checked."""


def _key_slot(container: Any, key: Any, source: Source, where: str) -> Slot | None:
    value = container[key]
    if not isinstance(value, str):
        return None

    def write(text: str) -> None:
        container[key] = text

    return Slot(source, value, write, where)


def _content_slots(holder: Json, source: Source, where: str) -> Iterator[Slot]:
    """`content` that is a string, or a list of parts of which the text parts are scanned."""
    content = holder.get("content")
    if isinstance(content, str):
        if slot := _key_slot(holder, "content", source, f"{where}.content"):
            yield slot
    elif isinstance(content, list):
        for j, part in enumerate(content):
            is_text = isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text")
            if is_text and (slot := _key_slot(part, "text", source, f"{where}.content[{j}].text")):
                yield slot


def _json_string_slot(holder: Json, key: str, source: Source, where: str) -> Slot | None:
    """Tool-call arguments travel as a JSON string; redaction must leave them valid JSON."""
    raw = holder.get(key)
    if not isinstance(raw, str):
        return None

    def write(text: str) -> None:
        try:
            json.loads(text)
        except ValueError:
            text = json.dumps({"redacted": text})
        holder[key] = text

    return Slot(source, raw, write, f"{where}.{key}")


def leaf_slots(value: Any, source: Source, where: str) -> Iterator[Slot]:
    """Every string inside a JSON value (an Anthropic tool_use input), each rewritable in place."""
    items: list[tuple[Any, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return
    for key, item in items:
        path = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
        if isinstance(item, str):
            if slot := _key_slot(value, key, source, path):
                yield slot
        else:
            yield from leaf_slots(item, source, path)


def _tool_call_slots(message: Json, where: str) -> Iterator[Slot]:
    """The arguments of each tool call an (OpenAI) assistant message makes."""
    for k, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and (
            slot := _json_string_slot(function, "arguments", Source.TOOL_CALL, f"{where}.tool_calls[{k}]")
        ):
            yield slot


# ---- OpenAI requests --------------------------------------------------------------------------------------


def chat_request(body: Json) -> list[Slot]:
    slots: list[Slot] = []
    for i, message in enumerate(body["messages"]):
        source = _ROLE_SOURCE.get(str(message.get("role")), Source.USER)
        where = f"messages[{i}]"
        slots.extend(_content_slots(message, source, where))
        slots.extend(_tool_call_slots(message, where))
    return slots


def completion_request(body: Json) -> list[Slot]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [s for s in [_key_slot(body, "prompt", Source.USER, "prompt")] if s]
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        return [s for i in range(len(prompt)) if (s := _key_slot(prompt, i, Source.USER, f"prompt[{i}]"))]
    raise Unscannable("prompt is given as token ids, which cannot be scanned")


def embedding_request(body: Json) -> list[Slot]:
    # Embedding inputs are mostly documents on their way into a retrieval index: judged as data.
    value = body.get("input")
    if isinstance(value, str):
        return [s for s in [_key_slot(body, "input", Source.RETRIEVAL, "input")] if s]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return [s for i in range(len(value)) if (s := _key_slot(value, i, Source.RETRIEVAL, f"input[{i}]"))]
    raise Unscannable("input is given as token ids, which cannot be scanned")


# ---- OpenAI responses -------------------------------------------------------------------------------------


def chat_response(body: Json) -> list[Slot]:
    slots: list[Slot] = []
    for i, choice in enumerate(body.get("choices") or []):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        where = f"choices[{i}].message"
        slots.extend(_content_slots(message, Source.MODEL_OUTPUT, where))
        slots.extend(_tool_call_slots(message, where))
    return slots


def completion_response(body: Json) -> list[Slot]:
    choices = body.get("choices") or []
    return [
        s
        for i, choice in enumerate(choices)
        if isinstance(choice, dict)
        and (s := _key_slot(choice, "text", Source.MODEL_OUTPUT, f"choices[{i}].text"))
    ]


# ---- Anthropic --------------------------------------------------------------------------------------------


def _anthropic_blocks(holder: Json, source: Source, where: str) -> Iterator[Slot]:
    content = holder.get("content")
    if isinstance(content, str):
        if slot := _key_slot(holder, "content", source, f"{where}.content"):
            yield slot
        return
    if not isinstance(content, list):
        return
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            continue
        path = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text" and (slot := _key_slot(block, "text", source, f"{path}.text")):
            yield slot
        elif kind == "tool_result":
            yield from _anthropic_blocks(block, Source.TOOL_RESULT, path)
        elif kind == "tool_use":
            yield from leaf_slots(block.get("input"), Source.TOOL_CALL, f"{path}.input")


def messages_request(body: Json) -> list[Slot]:
    slots: list[Slot] = []
    system = body.get("system")
    if isinstance(system, str):
        slots.extend(s for s in [_key_slot(body, "system", Source.SYSTEM, "system")] if s)
    elif isinstance(system, list):
        for j, block in enumerate(system):
            if isinstance(block, dict) and block.get("type") == "text":
                slots.extend(s for s in [_key_slot(block, "text", Source.SYSTEM, f"system[{j}].text")] if s)
    for i, message in enumerate(body["messages"]):
        source = _ROLE_SOURCE.get(str(message.get("role")), Source.USER)
        slots.extend(_anthropic_blocks(message, source, f"messages[{i}]"))
    return slots


def messages_response(body: Json) -> list[Slot]:
    return list(_anthropic_blocks(body, Source.MODEL_OUTPUT, "response"))
