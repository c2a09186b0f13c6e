"""The OpenAI and Anthropic wire formats: a case's conversation as a request body, an answer as a Reply.

A guard in front of the model (a vallum gateway, a provider's content filter) answers a blocked request
with an error; those errors are recognised here and become a Reply with `blocked` set, since a block is
the defence working, not the endpoint failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vallum.redteam.campaign import Message
from vallum.redteam.catalogue import ToolSpec

Api = Literal["openai", "anthropic"]
ANTHROPIC_VERSION = "2023-06-01"
# Error codes that mean "a guard refused this", by where they appear in the error body.
BLOCK_CODES = frozenset({"input_blocked", "output_blocked", "content_filter", "content_policy_violation"})


@dataclass(frozen=True)
class ToolCallMade:
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[ToolCallMade, ...] = ()
    blocked: str | None = None  # the guard's code when the request or answer was blocked
    status: int = 200
    tries: int = 1

    def as_assistant_text(self) -> str:
        """How the answer is shown to the model in the next turn of a multi-turn attack."""
        if self.text or not self.tool_calls:
            return self.text
        return "\n".join(f"[called {call.name}({call.arguments})]" for call in self.tool_calls)


def endpoint(base_url: str, api: Api) -> str:
    """`--target` may be given with or without its /v1 suffix; either way the API's path is added."""
    base = base_url.rstrip("/")
    if api == "anthropic":
        return f"{base.removesuffix('/v1')}/v1/messages"
    return f"{base if base.endswith('/v1') else base + '/v1'}/chat/completions"


def headers(api: Api, api_key: str | None) -> dict[str, str]:
    if api == "anthropic":
        out = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            out["x-api-key"] = api_key
        return out
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


def request_body(
    api: Api,
    *,
    model: str,
    system: str,
    messages: Sequence[Message],
    tools: Sequence[ToolSpec],
    max_tokens: int,
    temperature: float,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": temperature}
    if api == "anthropic":
        body["system"] = system
        body["messages"] = [_anthropic_message(m) for m in messages]
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        return body
    body["messages"] = [{"role": "system", "content": system}, *(_openai_message(m) for m in messages)]
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in tools
        ]
    return body


def _openai_message(message: Message) -> dict[str, Any]:
    if message.role == "tool_call":
        function = {"name": message.name, "arguments": json.dumps(message.arguments)}
        call = {"id": message.call_id, "type": "function", "function": function}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    if message.role == "tool_result":
        return {"role": "tool", "tool_call_id": message.call_id, "content": message.text}
    return {"role": message.role, "content": message.text}


def _anthropic_message(message: Message) -> dict[str, Any]:
    if message.role == "tool_call":
        block = {"type": "tool_use", "id": message.call_id, "name": message.name, "input": message.arguments}
        return {"role": "assistant", "content": [block]}
    if message.role == "tool_result":
        block = {"type": "tool_result", "tool_use_id": message.call_id, "content": message.text}
        return {"role": "user", "content": [block]}
    return {"role": message.role, "content": message.text}


def blocked_code(body: Any) -> str | None:
    """The guard's code when an error body says the request or answer was blocked by policy."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        return None
    codes = [error.get("code"), error.get("type")]
    vallum = error.get("vallum")
    if isinstance(vallum, dict):
        codes.insert(0, vallum.get("code"))
    return next((code for code in codes if isinstance(code, str) and code in BLOCK_CODES), None)


def parse_reply(api: Api, body: Any) -> Reply:
    """A successful response body as a Reply; ValueError when it is not the API's shape."""
    if not isinstance(body, dict):
        raise ValueError("the response body is not a JSON object")
    if api == "anthropic":
        content = body.get("content")
        if not isinstance(content, list):
            raise ValueError("the response has no 'content' list")
        texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        calls = tuple(
            ToolCallMade(str(b.get("name")), json.dumps(b.get("input", {})))
            for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use"
        )
        return Reply(text="".join(t for t in texts if isinstance(t, str)), tool_calls=calls)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("the response has no 'choices'")
    choice = choices[0]
    raw = choice.get("message")
    message: dict[str, Any] = raw if isinstance(raw, dict) else {}
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    calls = tuple(
        ToolCallMade(str(call["function"].get("name")), str(call["function"].get("arguments", "")))
        for call in message.get("tool_calls") or []
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    )
    blocked = "content_filter" if choice.get("finish_reason") == "content_filter" and not text else None
    return Reply(text=text, tool_calls=calls, blocked=blocked)
