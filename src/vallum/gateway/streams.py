"""Relaying a streamed answer: text scanned incrementally with a bounded hold-back, tool calls held whole.

Text deltas go through a `StreamScanner` per choice (OpenAI) or content block (Anthropic), so nothing is
forwarded before it has been scanned together with what follows it (a secret split over two chunks is
caught), then through the request's vault restorer. Tool-call arguments are collected until the call is
complete and checked before any of it reaches the client. A block ends the stream with an error event
in the API's own shape, which the official SDKs raise as an exception.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from vallum.core.guard import Guard
from vallum.core.streaming import StreamScanner
from vallum.core.types import Action, Identity, Source
from vallum.gateway.errors import Api, GatewayError
from vallum.gateway.inspection import StageRecord, inspect
from vallum.gateway.metrics import GatewayMetrics
from vallum.gateway.slots import Slot, leaf_slots
from vallum.gateway.sse import EventReader, ServerEvent, encode
from vallum.gateway.upstream import UpstreamCutOff, UpstreamResponse, UpstreamTimedOut
from vallum.vault import StreamRestorer, Vault


@dataclass(slots=True)
class OutputContext:
    guard: Guard
    vault: Vault  # the request's: its placeholders are restored in the answer
    output_vault: Vault  # the answer's own redactions, which are not
    identity: Identity
    enforce: bool
    record: StageRecord
    metrics: GatewayMetrics
    holdback: int
    min_step: int
    first_step: int
    lookahead: bool | None  # None: as the guard's detectors ask
    max_wait: float  # seconds
    keep_text: bool
    on_usage: Callable[[int], None]
    upstream: str
    error: GatewayError | None = None  # how the stream ended, when it did not end well
    # Text was released since the last write: it goes to the client at once instead of after the rest of
    # the network read, which from a fast upstream can hold the whole answer.
    text_released: bool = False


@dataclass(slots=True)
class _TextStream:
    """One choice's (or content block's) text on its way to the client."""

    ctx: OutputContext
    scanner: StreamScanner = field(init=False)
    restorer: StreamRestorer = field(init=False)

    def __post_init__(self) -> None:
        self.scanner = StreamScanner(
            self.ctx.guard,
            source=Source.MODEL_OUTPUT,
            holdback=self.ctx.holdback,
            min_step=self.ctx.min_step,
            first_step=self.ctx.first_step,
            lookahead=self.ctx.lookahead,
            max_wait=self.ctx.max_wait,
            vault=self.ctx.output_vault,
        )
        self.restorer = self.ctx.vault.stream_restorer()

    def feed(self, text: str) -> str:
        step = self.scanner.feed(text)
        if not (step.text or step.findings or step.stopped) and self.ctx.enforce:
            return ""  # held back: most chunks of a stream, so they skip the bookkeeping below
        return self._forward(step, text)

    def finish(self) -> str:
        return self._forward(self.scanner.finish(), "") + self.restorer.flush()

    def _forward(self, step: Any, original: str) -> str:
        ctx = self.ctx
        if step.findings:
            findings = list(step.findings)
            for f in findings:
                entry = f.to_dict()
                entry.pop("evidence")
                entry["where"] = "stream"
                ctx.record.findings.append(entry)
                if f.category not in ctx.record.categories and step.action is not Action.ALLOW:
                    ctx.record.categories.append(f.category)
        if step.action.rank > ctx.record.action.rank:
            ctx.record.action = step.action
            ctx.metrics.verdicts.labels("output", step.action.value).inc()
        if not ctx.enforce:
            return original  # shadow mode: recorded above, forwarded as the model wrote it
        if step.stopped:
            raise _blocked_stream(ctx)
        released = self.restorer.feed(step.text)
        ctx.text_released = ctx.text_released or bool(released)
        return released


def _blocked_stream(ctx: OutputContext) -> GatewayError:
    return GatewayError(
        400,
        "output_blocked",
        f"The model's answer was blocked by policy ({', '.join(ctx.record.categories) or 'policy'}).",
        {
            "categories": ctx.record.categories,
            "findings": [
                {"id": f["rule_id"] or f["detector"], "category": f["category"], "subtype": f["subtype"]}
                for f in ctx.record.findings
                if f["category"] in ctx.record.categories
            ],
            "policy_version": ctx.guard.policy.label,
        },
    )


async def _check_tool_slots(ctx: OutputContext, slots: list[Slot]) -> None:
    await inspect(
        ctx.guard,
        slots,
        stage="output",
        vault=ctx.output_vault,
        identity=ctx.identity,
        enforce=ctx.enforce,
        record=ctx.record,
        metrics=ctx.metrics,
        keep_text=ctx.keep_text,
    )


def _broken(ctx: OutputContext, what: str) -> GatewayError:
    ctx.metrics.upstream_errors.labels(ctx.upstream, "stream").inc()
    return GatewayError(502, "upstream_stream_broken", f"The upstream's stream {what}.")


def _timed_out(ctx: OutputContext) -> GatewayError:
    ctx.metrics.upstream_errors.labels(ctx.upstream, "timeout").inc()
    return GatewayError(504, "upstream_timeout", "The upstream stopped sending in the middle of its answer.")


class _ApiStream(Protocol):
    async def event(self, event: ServerEvent, out: list[bytes]) -> bool:
        """Append what the client gets for `event` to `out`; True when it ends the stream."""

    def end(self, out: list[bytes]) -> None:
        """Append what the client gets once the stream is over, or raise if it ended too soon."""


async def _relay(
    response: UpstreamResponse, stream: _ApiStream, ctx: OutputContext, api: Api
) -> AsyncIterator[bytes]:
    """The client's side of a stream. Whatever one network read completes is relayed in one write, but
    released text goes out as soon as it is, and a failure ends the stream with an error event in the
    API's own shape."""
    out: list[bytes] = []
    try:
        reader = EventReader()
        ended = False
        async for piece in response.chunks():
            for event in reader.feed(piece):
                if ended := await stream.event(event, out):
                    break
                if ctx.text_released:
                    ctx.text_released = False
                    written, out = b"".join(out), []
                    yield written
            if ended:
                break  # what is left goes out with the end of the stream, in the same write
            if out:
                written, out = b"".join(out), []
                yield written
        else:
            for event in reader.end():
                if await stream.event(event, out):
                    break
        stream.end(out)
    except GatewayError as exc:
        ctx.error = exc
    except (ValueError, TypeError, AttributeError, LookupError):  # a field of the wrong type or shape
        ctx.error = _broken(ctx, "sent a malformed event")
    except UpstreamTimedOut:
        ctx.error = _timed_out(ctx)
    except UpstreamCutOff:
        ctx.error = _broken(ctx, "was cut off")
    if ctx.error is not None:
        out.append(encode(ctx.error.body(api), "error" if api == "anthropic" else None))
    if out:
        yield b"".join(out)


def _json_object(data: str, ctx: OutputContext, what: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _broken(ctx, "sent something that is not JSON") from None
    if not isinstance(parsed, dict):
        raise _broken(ctx, f"sent something that is not {what}")
    return parsed


# ---- OpenAI -----------------------------------------------------------------------------------------------


class _OpenAIStream:
    """Chat or text completion chunks: each choice's text through its own scanner, tool calls held until
    complete and checked, `data: [DONE]` at the end."""

    def __init__(self, ctx: OutputContext) -> None:
        self.ctx = ctx
        self.texts: dict[int, _TextStream] = {}
        self.calls: dict[int, dict[int, dict[str, Any]]] = {}  # choice -> tool-call index -> the call so far
        self.last: dict[str, Any] = {}  # the latest chunk: its id, model and object frame what is released
        self.done = False
        self.refused = False  # the upstream sent an error chunk, which ends the stream as it is

    async def event(self, event: ServerEvent, out: list[bytes]) -> bool:
        if event.data.strip() == "[DONE]":
            self.done = True
            return True
        chunk = _json_object(event.data, self.ctx, "a chunk object")
        if "error" in chunk:
            out.append(encode(chunk))
            self.refused = True
            return True
        self.last = chunk
        if isinstance(usage := chunk.get("usage"), dict):
            self.ctx.on_usage(int(usage.get("total_tokens") or 0))
        out_choices = []
        for choice in chunk.get("choices") or []:
            released = await _openai_choice(choice, self.texts, self.calls, self.ctx)
            if released is not None:
                out_choices.append(released)
        if out_choices or chunk.get("usage"):
            out.append(encode({**chunk, "choices": out_choices}))
        return False

    def end(self, out: list[bytes]) -> None:
        if self.refused:
            return
        if not self.done:
            raise _broken(self.ctx, "ended before it was complete")
        # Choices that never sent finish_reason still have held-back text to release.
        template = {k: v for k, v in self.last.items() if k not in ("choices", "usage")}
        is_chat = template.get("object") != "text_completion"
        for index, text in self.texts.items():
            if rest := text.finish():
                piece = (
                    {"index": index, "delta": {"content": rest}}
                    if is_chat
                    else {"index": index, "text": rest}
                )
                out.append(encode({**template, "choices": [piece]}))
        out.append(encode("[DONE]"))


def relay_openai(response: UpstreamResponse, ctx: OutputContext) -> AsyncIterator[bytes]:
    return _relay(response, _OpenAIStream(ctx), ctx, "openai")


async def _openai_choice(
    choice: Any,
    texts: dict[int, _TextStream],
    calls: dict[int, dict[int, dict[str, Any]]],
    ctx: OutputContext,
) -> dict[str, Any] | None:
    """One choice of a chunk as the client may see it: chat chunks carry `delta`, completion chunks `text`."""
    if not isinstance(choice, dict):
        raise _broken(ctx, "sent a malformed choice")
    index = int(choice.get("index") or 0)
    is_chat = "delta" in choice or "text" not in choice
    holder = dict(choice.get("delta") or {}) if is_chat else dict(choice)
    field = "content" if is_chat else "text"
    text = texts.get(index)
    if text is None:
        text = texts[index] = _TextStream(ctx)
    if isinstance(written := holder.get(field), str):
        holder[field] = text.feed(written)
    for call in holder.pop("tool_calls", None) or []:
        _merge_tool_call(calls.setdefault(index, {}), call)
    finish = choice.get("finish_reason")
    if finish is not None:
        if rest := texts.pop(index).finish():
            holder[field] = (holder.get(field) or "") + rest
        complete = calls.pop(index, {})
        if complete:
            slots = [
                s
                for k, call in sorted(complete.items())
                for s in _function_argument_slots(call, f"choices[{index}].tool_calls[{k}]")
            ]
            await _check_tool_slots(ctx, slots)
            holder["tool_calls"] = [call for _, call in sorted(complete.items())]
    if not (holder.get(field) or holder.get("role") or holder.get("tool_calls") or finish is not None):
        return None
    return {**choice, "delta": holder} if is_chat else holder


def _merge_tool_call(calls: dict[int, dict[str, Any]], delta: Any) -> None:
    if not isinstance(delta, dict):
        return
    index = int(delta.get("index") or 0)
    call = calls.setdefault(
        index, {"index": index, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    if isinstance(function, dict):
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""


def _function_argument_slots(call: dict[str, Any], where: str) -> list[Slot]:
    function = call["function"]

    def write(text: str) -> None:
        try:
            json.loads(text)
        except ValueError:
            text = json.dumps({"redacted": text})
        function["arguments"] = text

    return [Slot(Source.TOOL_CALL, function["arguments"], write, f"{where}.function.arguments")]


# ---- Anthropic --------------------------------------------------------------------------------------------


class _AnthropicStream:
    """Message events: each text block through its own scanner, tool_use blocks held until their input is
    complete and checked, `message_stop` at the end."""

    def __init__(self, ctx: OutputContext) -> None:
        self.ctx = ctx
        self.texts: dict[int, _TextStream] = {}
        self.tools: dict[int, dict[str, Any]] = {}  # block index -> {"block": start block, "json": input}
        self.stopped = False
        self.refused = False  # the upstream sent an error event, which ends the stream as it is

    async def event(self, event: ServerEvent, out: list[bytes]) -> bool:
        data = _json_object(event.data, self.ctx, "an event object")
        kind = event.event or data.get("type")
        if kind == "error":
            out.append(encode(data, "error"))
            self.refused = True
            return True
        if kind == "message_stop":  # text of blocks the upstream never closed is still held back
            for index in list(self.texts):
                if rest := self.texts.pop(index).finish():
                    out.append(encode(_text_delta(index, rest), "content_block_delta"))
        for released in await _anthropic_event(kind, data, self.texts, self.tools, self.ctx):
            out.append(
                encode(released, released.get("type") or kind)
            )  # the type may be on the event line only
        self.stopped = kind == "message_stop"
        return self.stopped

    def end(self, out: list[bytes]) -> None:
        if not (self.refused or self.stopped):
            raise _broken(self.ctx, "ended before message_stop")


def relay_anthropic(response: UpstreamResponse, ctx: OutputContext) -> AsyncIterator[bytes]:
    return _relay(response, _AnthropicStream(ctx), ctx, "anthropic")


async def _anthropic_event(
    kind: str | None,
    data: dict[str, Any],
    texts: dict[int, _TextStream],
    tools: dict[int, dict[str, Any]],
    ctx: OutputContext,
) -> list[dict[str, Any]]:
    index = int(data.get("index") or 0)
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        if block.get("type") == "tool_use":
            tools[index] = {"block": block, "json": ""}
            return []  # announced once its input is complete and checked
        if block.get("type") == "text":
            texts[index] = _TextStream(ctx)
        return [data]
    if kind == "content_block_delta":
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            # Text for a block that was never opened (or already closed) is scanned all the same.
            stream = texts.get(index) or texts.setdefault(index, _TextStream(ctx))
            released = stream.feed(str(delta.get("text") or ""))
            return [{**data, "delta": {**delta, "text": released}}] if released else []
        if delta.get("type") == "input_json_delta" and index in tools:
            tools[index]["json"] += str(delta.get("partial_json") or "")
            return []
        return [data]
    if kind == "content_block_stop":
        if index in texts:
            rest = texts.pop(index).finish()
            before = [_text_delta(index, rest)] if rest else []
            return [*before, data]
        if index in tools:
            return await _complete_tool_use(index, tools.pop(index), data, ctx)
        return [data]
    if kind == "message_delta":
        usage = data.get("usage") or {}
        ctx.on_usage(int(usage.get("output_tokens") or 0) + int(usage.get("input_tokens") or 0))
    elif kind == "message_start":
        usage = (data.get("message") or {}).get("usage") or {}
        ctx.on_usage(int(usage.get("input_tokens") or 0))
    return [data]


def _text_delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


async def _complete_tool_use(
    index: int, pending: dict[str, Any], stop: dict[str, Any], ctx: OutputContext
) -> list[dict[str, Any]]:
    raw = pending["json"] or "{}"
    try:
        arguments = json.loads(raw)
    except ValueError:
        raise _broken(ctx, "sent tool input that is not JSON") from None
    holder = {"input": arguments}
    await _check_tool_slots(ctx, list(leaf_slots(holder, Source.TOOL_CALL, f"content[{index}]")))
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {**pending["block"], "input": {}},
    }
    delta = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": json.dumps(holder["input"])},
    }
    return [start, delta, stop]
