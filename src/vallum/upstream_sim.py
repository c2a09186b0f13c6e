"""`vallum upstream-sim`: a deterministic local LLM server speaking the OpenAI and Anthropic HTTP APIs.

It stands in for a real provider in tests, demos and benchmarks: OpenAI chat completions, completions,
embeddings and models, and Anthropic messages, streamed or not. What it answers (an echo of the last
user message, a script rule, or what a `#sim:` directive in that message asks for, faults included) is
decided in `vallum.upstream_sim_script`; this module speaks the wire formats. Any API key is accepted.

The last 100 requests received are kept for tests to inspect: GET /sim/requests lists them (oldest
first) with their method, path, headers (lower-case names) and JSON body; DELETE /sim/requests forgets them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import struct
import time
from collections import deque
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vallum.errors import VallumError
from vallum.upstream_sim_script import (
    Answer,
    Context,
    DirectiveError,
    Directives,
    Script,
    ScriptError,
    parse_directives,
)

__all__ = ["MODELS", "Script", "ScriptError", "create_app", "serve"]

MODELS = ("sim-echo", "sim-large", "sim-embed")
DEFAULT_EMBEDDING_DIMENSIONS = 16
RECORDED_REQUESTS = 100
HANG_SECONDS = 3600.0

_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
_ANTHROPIC_ERROR_TYPES = {
    **_OPENAI_ERROR_TYPES,
    413: "request_too_large",
    529: "overloaded_error",
}


class _BadRequest(VallumError):
    """The request cannot be answered as sent; it becomes a 400 in the caller's API dialect."""


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts (OpenAI and Anthropic agree)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (
            part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
        return "\n".join(text for text in parts if isinstance(text, str))
    return ""


def _any_text(content: Any) -> str:
    """Like _text_of, but also the text inside Anthropic tool_result blocks: all a rule may match."""
    if not isinstance(content, list):
        return _text_of(content)
    texts = [_text_of(content)]
    for part in content:
        if isinstance(part, dict) and part.get("type") == "tool_result":
            texts.append(_text_of(part.get("content")))
    return "\n".join(text for text in texts if text)


def _context(system: str, messages: list[dict[str, Any]]) -> Context:
    return Context(system=system, messages=tuple(_any_text(message.get("content")) for message in messages))


def _openai_system(messages: list[dict[str, Any]]) -> str:
    system = (m for m in messages if m.get("role") in ("system", "developer"))
    return "\n".join(_text_of(message.get("content")) for message in system)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise _BadRequest("'messages' must be a list of message objects")
    return messages


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    users = (message for message in reversed(messages) if message.get("role") == "user")
    return next((_text_of(message.get("content")) for message in users), "")


def _tokens(chars: int) -> int:
    """Roughly what a real tokenizer counts: four characters a token."""
    return math.ceil(chars / 4)


def _pieces(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _openai_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _json_body(payload: dict[str, Any], broken: bool) -> Response:
    """The payload as JSON; broken, only its first half, as from an upstream that died mid-answer."""
    content = json.dumps(payload)
    return Response(content[: len(content) // 2] if broken else content, media_type="application/json")


def _error(request: Request, status: int, message: str, code: str) -> Response:
    """An error body shaped as the API the request was sent to expects it (its SDK picks the exception)."""
    if request.url.path.endswith("/v1/messages"):
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status)
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


def _bad_request(request: Request, error: Exception) -> Response:
    return _error(request, 400, str(error), "invalid_request")


async def _fault(request: Request, directives: Directives) -> Response | None:
    """Carry out the directives that delay or replace the answer; the response that replaces it, if any."""
    if directives.hang:
        # Once the body is read, the next ASGI message is the client's disconnect.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(request.receive(), HANG_SECONDS)
    await asyncio.sleep(directives.delay)
    if directives.status is not None:
        message = f"simulated HTTP {directives.status} (#sim:status)"
        return _error(request, directives.status, message, "simulated_status")
    if directives.garbage:
        # Labelled JSON, so that clients which trust the content type trip over it too.
        return Response("<html>upstream-sim: #sim:garbage</html>", media_type="application/json")
    return None


class _EventStream(Response):
    """Server-sent events `pause` seconds apart; a broken stream stops halfway and drops the connection."""

    def __init__(self, frames: list[str], pause: float, broken: bool) -> None:
        # Not Response.__init__: it would announce a content-length of 0.
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self.frames = frames[: max(1, len(frames) // 2)] if broken else frames
        self.pause = pause
        self.broken = broken

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for index, frame in enumerate(self.frames):
            if index and self.pause:
                await asyncio.sleep(self.pause)
            await send({"type": "http.response.body", "body": frame.encode(), "more_body": True})
        # Returning with the body unfinished makes the server drop the connection (uvicorn logs an error).
        if not self.broken:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _openai_stream(events: list[dict[str, Any]], directives: Directives) -> Response:
    frames = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
    return _EventStream(frames, directives.chunk_delay, directives.broken)


def _anthropic_stream(events: list[dict[str, Any]], directives: Directives) -> Response:
    frames = [f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events]
    return _EventStream(frames, directives.chunk_delay, directives.broken)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _chat_completion(
    head: dict[str, Any], answer: Answer, call_id: str, usage: dict[str, int]
) -> dict[str, Any]:
    call = answer.tool_call
    message: dict[str, Any] = {"role": "assistant", "content": None if call else answer.text}
    if call:
        function = {"name": call.name, "arguments": call.arguments_json}
        message["tool_calls"] = [{"id": call_id, "type": "function", "function": function}]
    finish_reason = "tool_calls" if call else "stop"
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}


def _chat_chunks(
    head: dict[str, Any], answer: Answer, call_id: str, usage: dict[str, int] | None, chunk_size: int
) -> list[dict[str, Any]]:
    """A streamed chat completion's chunks; a last one with `usage` only when the client asked for it."""
    call = answer.tool_call
    pieces = _pieces(answer.wire_text, chunk_size)
    deltas: list[dict[str, Any]]
    if call:
        function = {"name": call.name, "arguments": ""}
        opening = {"index": 0, "id": call_id, "type": "function", "function": function}
        deltas = [{"role": "assistant", "content": None, "tool_calls": [opening]}]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in pieces]
    else:
        deltas = [{"role": "assistant", "content": ""}] + [{"content": piece} for piece in pieces]
    # Asked for usage, OpenAI sends `usage: null` in every chunk but the extra last one.
    null_usage = {} if usage is None else {"usage": None}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**head, "object": "chat.completion.chunk", "choices": [choice], **null_usage}

    chunks = [*map(chunk, deltas), chunk({}, "tool_calls" if call else "stop")]
    if usage is not None:
        chunks.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return chunks


def _anthropic_events(message: dict[str, Any], answer: Answer, chunk_size: int) -> list[dict[str, Any]]:
    """A streamed Message as the Anthropic API sends it: its start, one content block, its end."""
    [block] = message["content"]
    pieces = _pieces(answer.wire_text, chunk_size)
    if answer.tool_call:
        opening = {**block, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    else:
        opening = {**block, "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
    usage = message["usage"]
    started = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 0}}
    ending = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    return [
        {"type": "message_start", "message": started},
        {"type": "content_block_start", "index": 0, "content_block": opening},
        {"type": "ping"},
        *({"type": "content_block_delta", "index": 0, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": ending, "usage": {"output_tokens": usage["output_tokens"]}},
        {"type": "message_stop"},
    ]


def _embedding(text: str, dimensions: int) -> list[float]:
    """A unit vector fixed by the text alone, in float32 precision so the float and base64 forms agree."""
    words = struct.unpack(f"<{dimensions}I", hashlib.shake_256(text.encode()).digest(4 * dimensions))
    coordinates = [word / 2**31 - 1 for word in words]
    norm = math.sqrt(sum(value * value for value in coordinates)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in coordinates))
    return list(struct.unpack(f"<{dimensions}f", packed))


def _strings(value: Any, field: str) -> list[str]:
    """`value` as a non-empty list of strings, where the API takes a string or a list of strings."""
    strings = [value] if isinstance(value, str) else value
    if not isinstance(strings, list) or not strings or not all(isinstance(item, str) for item in strings):
        raise _BadRequest(f"'{field}' must be a string or a non-empty list of strings")
    return strings


class _Simulator:
    """The app's state and endpoints: the script, the recorded requests and a counter for response ids."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: deque[dict[str, Any]] = deque(maxlen=RECORDED_REQUESTS)
        self._serials = itertools.count(1)

    def _serial(self) -> str:
        return f"{next(self._serials):06d}"

    async def _receive(self, request: Request) -> Any:
        """Record the request; its parsed JSON body, None when it has none or it is not JSON."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = dict(request.headers)
        self.requests.append(
            {"method": request.method, "path": request.url.path, "headers": headers, "body": body}
        )
        return body

    async def _json_object(self, request: Request) -> dict[str, Any]:
        body = await self._receive(request)
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        return body

    async def models(self, request: Request) -> Response:
        await self._receive(request)
        data = [{"id": model, "object": "model", "created": 0, "owned_by": "vallum"} for model in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def recorded(self, request: Request) -> Response:
        return JSONResponse(list(self.requests))

    async def forget(self, request: Request) -> Response:
        self.requests.clear()
        return Response(status_code=204)

    async def chat_completions(self, request: Request) -> Response:
        body = await self._json_object(request)
        messages = _messages(body)
        directives = parse_directives(_last_user_text(messages))
        if (fault := await _fault(request, directives)) is not None:
            return fault
        answer = self.script.answer(directives, _context(_openai_system(messages), messages))
        prompt_tokens = _tokens(sum(len(_text_of(message.get("content"))) for message in messages))
        usage = _openai_usage(prompt_tokens, _tokens(len(answer.wire_text)))
        serial = self._serial()
        model = body.get("model", MODELS[0])
        head = {"id": f"chatcmpl-sim-{serial}", "created": int(time.time()), "model": model}
        call_id = f"call_sim_{serial}"
        if not body.get("stream"):
            return _json_body(_chat_completion(head, answer, call_id, usage), directives.broken)
        stream_usage = usage if _include_usage(body) else None
        return _openai_stream(_chat_chunks(head, answer, call_id, stream_usage, directives.chunk), directives)

    async def completions(self, request: Request) -> Response:
        body = await self._json_object(request)
        prompts = _strings(body.get("prompt"), "prompt")
        # Each prompt gets its own answer; the last one, like a last user message, carries the faults.
        per_prompt = [parse_directives(prompt) for prompt in prompts]
        answers = [self.script.answer(directives) for directives in per_prompt]
        if any(answer.tool_call for answer in answers):
            raise _BadRequest("tool calls need /v1/chat/completions or /v1/messages")
        directives = per_prompt[-1]
        if (fault := await _fault(request, directives)) is not None:
            return fault
        completion_tokens = _tokens(sum(len(answer.text) for answer in answers))
        usage = _openai_usage(_tokens(sum(map(len, prompts))), completion_tokens)
        head = {
            "id": f"cmpl-sim-{self._serial()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model", MODELS[0]),
        }

        def choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
            return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}

        if not body.get("stream"):
            choices = [choice(index, answer.text, "stop") for index, answer in enumerate(answers)]
            return _json_body({**head, "choices": choices, "usage": usage}, directives.broken)
        chunks = [
            {**head, "choices": [choice(index, piece, None)]}
            for index, answer in enumerate(answers)
            for piece in _pieces(answer.text, directives.chunk)
        ]
        chunks += [{**head, "choices": [choice(index, "", "stop")]} for index in range(len(answers))]
        if _include_usage(body):
            chunks.append({**head, "choices": [], "usage": usage})
        return _openai_stream(chunks, directives)

    async def embeddings(self, request: Request) -> Response:
        body = await self._json_object(request)
        texts = _strings(body.get("input"), "input")
        dimensions = body.get("dimensions", DEFAULT_EMBEDDING_DIMENSIONS)
        if type(dimensions) is not int or dimensions < 1:
            raise _BadRequest("'dimensions' must be a positive integer")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise _BadRequest("'encoding_format' must be 'float' or 'base64'")
        if (fault := await _fault(request, parse_directives(texts[-1]))) is not None:
            return fault
        data = []
        for index, text in enumerate(texts):
            vector: list[float] | str = _embedding(text, dimensions)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = _tokens(sum(map(len, texts)))
        model = body.get("model", MODELS[2])
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

    async def messages(self, request: Request) -> Response:
        body = await self._json_object(request)
        messages = _messages(body)
        directives = parse_directives(_last_user_text(messages))
        if (fault := await _fault(request, directives)) is not None:
            return fault
        answer = self.script.answer(directives, _context(_text_of(body.get("system")), messages))
        call = answer.tool_call
        serial = self._serial()
        prompt = [_text_of(body.get("system")), *(_text_of(message.get("content")) for message in messages)]
        message = {
            "id": f"msg_sim_{serial}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", MODELS[0]),
            "content": [
                {"type": "tool_use", "id": f"toolu_sim_{serial}", "name": call.name, "input": call.arguments}
                if call
                else {"type": "text", "text": answer.text}
            ],
            "stop_reason": "tool_use" if call else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": _tokens(sum(map(len, prompt))),
                "output_tokens": _tokens(len(answer.wire_text)),
            },
        }
        if not body.get("stream"):
            return _json_body(message, directives.broken)
        return _anthropic_stream(_anthropic_events(message, answer, directives.chunk), directives)


def create_app(script: Script | None = None) -> Starlette:
    """The simulator as an ASGI app; each app keeps its own record of requests."""
    simulator = _Simulator(script or Script())
    routes = [
        Route("/v1/models", simulator.models, methods=["GET"]),
        Route("/v1/chat/completions", simulator.chat_completions, methods=["POST"]),
        Route("/v1/completions", simulator.completions, methods=["POST"]),
        Route("/v1/embeddings", simulator.embeddings, methods=["POST"]),
        Route("/v1/messages", simulator.messages, methods=["POST"]),
        Route("/sim/requests", simulator.recorded, methods=["GET"]),
        Route("/sim/requests", simulator.forget, methods=["DELETE"]),
    ]
    return Starlette(
        routes=routes, exception_handlers={_BadRequest: _bad_request, DirectiveError: _bad_request}
    )


def serve(host: str, port: int, script_path: str | None = None) -> None:
    """Run the simulator until interrupted, answering from the script at `script_path` if given."""
    script = Script.load(script_path) if script_path else None
    uvicorn.run(create_app(script), host=host, port=port, log_level="warning")
