"""Reading a client's request body: size and time limits, UTF-8, JSON, and the fields the gateway relies on.

Only the fields the gateway reads are validated; unknown fields travel on to the upstream untouched, as
OpenAI-compatible servers decide for themselves what they accept.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect, Request

from vallum.gateway.config import Limits
from vallum.gateway.errors import GatewayError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Open):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class CompletionBody(_Open):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool = False


class EmbeddingBody(_Open):
    model: str
    input: str | list[str] | list[int] | list[list[int]]


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesBody(_Open):
    model: str
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(gt=0)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False


Schema = type[ChatBody] | type[CompletionBody] | type[EmbeddingBody] | type[MessagesBody]


async def read_body(request: Request, limits: Limits) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise _too_large(limits)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_body_bytes:
                    raise _too_large(limits)
                chunks.append(chunk)
    except TimeoutError:
        raise GatewayError(408, "body_timeout", "The request body did not arrive in time.") from None
    except ClientDisconnect:
        raise GatewayError(
            400, "body_incomplete", "The client went away before sending the whole body."
        ) from None
    return b"".join(chunks)


def parse_json(raw: bytes, schema: Schema, max_messages: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GatewayError(
            400, "invalid_utf8", f"The request body is not valid UTF-8 (byte {exc.start})."
        ) from None
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise GatewayError(400, "invalid_json", f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "invalid_request", "The request body must be a JSON object.")
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _field(body, first["loc"])
        raise GatewayError(400, "invalid_request", f"{where}: {first['msg']}", {"param": where}) from None
    if len(body.get("messages") or ()) > max_messages:
        raise GatewayError(
            400,
            "too_many_messages",
            f"The request has more than {max_messages} messages, the gateway's limit.",
        )
    return body


def _field(body: Any, loc: tuple[int | str, ...]) -> str:
    """The body field a validation error is about, e.g. messages.0.content.

    Pydantic adds the union member it tried to the location (messages.0.content.str), which names no
    field of the body, so the path follows the body as far as it goes, plus the name of a missing field.
    """
    parts: list[str] = []
    node = body
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str):
            if part not in node:
                if i == len(loc) - 1:
                    parts.append(part)
                break
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            break
        parts.append(str(part))
    return ".".join(parts)


def _too_large(limits: Limits) -> GatewayError:
    return GatewayError(
        413,
        "body_too_large",
        f"The request body is larger than the gateway's limit of {limits.max_body_bytes} bytes.",
    )
