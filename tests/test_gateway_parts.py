"""The gateway's small parts on their own: configuration, keys, limits, the circuit breaker, SSE, slots."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vallum.core.types import Source
from vallum.gateway import slots
from vallum.gateway.breaker import CircuitBreaker, State
from vallum.gateway.config import ConfigError, GatewayConfig, RateLimit
from vallum.gateway.identity import KeyRing, digest, new_key, presented_key
from vallum.gateway.limits import Limiter
from vallum.gateway.sse import EventReader


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def config(**fields: object) -> GatewayConfig:
    base: dict[str, object] = {
        "upstreams": [{"name": "a", "base_url": "http://127.0.0.1:1/v1"}],
        "routes": [
            {"model": "gpt-*", "upstream": "a", "upstream_model": "gpt-renamed"},
            {"model": "*", "upstream": "a"},
        ],
    }
    return GatewayConfig.model_validate({**base, **fields})


def test_routes_match_in_order_and_may_rename_the_model() -> None:
    cfg = config()
    assert cfg.route("gpt-4o") is not None and cfg.route("gpt-4o")[1] == "gpt-renamed"  # type: ignore[index]
    assert cfg.route("llama3")[1] == "llama3"  # type: ignore[index]


def test_a_route_to_an_unknown_upstream_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown upstream 'b'"):
        config(routes=[{"model": "*", "upstream": "b"}])


def test_keys_are_optional_only_on_loopback_without_configured_keys() -> None:
    assert not config().keys_required
    assert config(host="0.0.0.0").keys_required
    assert config(keys=[{"id": "k", "sha256": digest("x")}]).keys_required
    with pytest.raises(ValueError, match="refused on a non-loopback host"):
        config(host="0.0.0.0", require_keys="never")


def test_config_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("upstreams:\n  - name: a\n    base_url: http://x/v1\n    retries: many\n")
    with pytest.raises(ConfigError, match=r"upstreams\.0\.retries"):
        GatewayConfig.load(path)


def test_an_upstream_key_comes_from_the_environment_and_a_missing_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = config(
        upstreams=[{"name": "a", "base_url": "http://x/v1", "api_key_env": "VALLUM_TEST_KEY"}]
    ).upstreams[0]
    monkeypatch.setenv("VALLUM_TEST_KEY", "sk-from-env")
    assert upstream.api_key() == "sk-from-env"
    monkeypatch.delenv("VALLUM_TEST_KEY")
    with pytest.raises(ConfigError, match="VALLUM_TEST_KEY is not set"):
        upstream.api_key()


def test_a_new_key_is_found_by_its_digest_only() -> None:
    key, key_digest = new_key()
    ring = KeyRing(config(keys=[{"id": "app", "sha256": key_digest}]).keys)
    found = ring.find(key)
    assert found is not None and found.id == "app"
    assert ring.find(key + "x") is None
    assert key not in repr(found)


def test_the_presented_key_comes_from_either_sdk_header() -> None:
    assert presented_key("Bearer vk-1", None) == "vk-1"
    assert presented_key(None, "vk-2") == "vk-2"
    assert presented_key("Basic abc", None) is None


def test_the_request_rate_refills_over_time() -> None:
    clock = Clock()
    limiter = Limiter(clock=clock, wall=clock)
    limit = RateLimit(requests_per_minute=6)  # a burst of one, then one every ten seconds
    assert limiter.take("u", limit) is None
    refusal = limiter.take("u", limit)
    assert refusal is not None and refusal.code == "rate_limited" and refusal.retry_after == pytest.approx(10)
    clock.now += 10
    assert limiter.take("u", limit) is None
    assert limiter.take("other", limit) is None  # each identity has its own allowance


def test_the_token_budget_resets_each_day() -> None:
    clock = Clock()
    limiter = Limiter(clock=clock, wall=clock)
    limit = RateLimit(tokens_per_day=100)
    limiter.charge("u", 100)
    refusal = limiter.take("u", limit)
    assert refusal is not None and refusal.code == "budget_exceeded"
    clock.now += 86_400
    assert limiter.take("u", limit) is None


def test_the_breaker_opens_after_consecutive_failures_and_tries_once_after_reset() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=2, reset_s=30, clock=clock)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now += 30
    assert breaker.allow() and not breaker.allow()  # one trial request at a time
    breaker.failure()
    assert breaker.state is State.OPEN
    clock.now += 30
    assert breaker.allow()
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allow()


def test_chat_slots_cover_every_role_and_tool_call_and_write_back() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "1", "content": "result"},
        ]
    }
    found = slots.chat_request(body)
    assert [(s.source, s.text) for s in found] == [
        (Source.SYSTEM, "Be brief."),
        (Source.USER, "hi"),
        (Source.TOOL_CALL, '{"a": 1}'),
        (Source.TOOL_RESULT, "result"),
    ]
    found[1].write("HI")
    found[2].write("not json")  # a redaction that broke the JSON still leaves valid JSON behind
    assert body["messages"][1]["content"][0]["text"] == "HI"  # type: ignore[index]
    assert body["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"redacted": "not json"}'  # type: ignore[index]


def test_anthropic_slots_include_system_blocks_tool_results_and_tool_inputs() -> None:
    body = {
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "page text"}],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": ["x"]}}],
            },
        ],
    }
    assert [(s.source, s.text) for s in slots.messages_request(body)] == [
        (Source.SYSTEM, "Be brief."),
        (Source.TOOL_RESULT, "page text"),
        (Source.TOOL_CALL, "x"),
    ]


def test_token_id_prompts_are_reported_as_unscannable() -> None:
    with pytest.raises(slots.Unscannable):
        slots.embedding_request({"input": [[1, 2, 3]]})


def test_azure_upstreams_use_deployment_urls_and_the_api_key_header(monkeypatch: pytest.MonkeyPatch) -> None:
    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.upstream import Connections, UpstreamClient

    monkeypatch.setenv("VALLUM_TEST_AZURE_KEY", "az-key")
    upstream = config(
        upstreams=[
            {
                "name": "a",
                "kind": "azure",
                "base_url": "https://r.openai.azure.com",
                "api_key_env": "VALLUM_TEST_AZURE_KEY",
            }
        ]
    ).upstreams[0]
    client = UpstreamClient(upstream, Connections(10), GatewayMetrics())
    assert client.url("chat/completions", "gpt4o-prod") == (
        "https://r.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    )
    headers = client.headers({"authorization": "Bearer client", "anthropic-version": "x"})
    assert headers["api-key"] == "az-key" and "authorization" not in headers


def test_a_blocked_event_loop_shows_as_lag_and_sheds_new_requests() -> None:
    import time

    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.shedding import LoadShedder

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("a shed request must not reach the app")

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def scenario() -> float:
        shedder = LoadShedder(app, max_in_flight=100, max_loop_lag_s=0.1, metrics=GatewayMetrics())
        probe = asyncio.create_task(shedder._measure_lag())
        await asyncio.sleep(0.01)
        time.sleep(0.3)  # a CPU-bound stretch: the loop cannot run its timers
        await asyncio.sleep(0.001)  # the probe, long overdue, runs first
        shedder._probe = probe
        await shedder({"type": "http", "path": "/v1/messages"}, None, send)  # type: ignore[arg-type]
        probe.cancel()
        return shedder.loop_lag_s

    lag = asyncio.run(scenario())
    assert lag > 0.1
    assert sent[0]["status"] == 503
    assert b'"overloaded"' in sent[1]["body"] and b'"type": "error"' in sent[1]["body"]  # type: ignore[operator]


# ---- server-sent events ---------------------------------------------------------------------------------


def events_of(*chunks: bytes) -> list[tuple[str | None, str]]:
    reader = EventReader()
    events = [event for chunk in chunks for event in reader.feed(chunk)]
    return [(e.event, e.data) for e in [*events, *reader.end()]]


def test_events_are_read_whatever_the_chunk_boundaries() -> None:
    stream = b'data: {"a": 1}\n\n: keep-alive\n\nevent: ping\ndata: x\ndata: y\n\ndata: \xc3\xa9t\xc3\xa9\n\n'
    expected = [(None, '{"a": 1}'), ("ping", "x\ny"), (None, "été")]
    assert events_of(stream) == expected
    assert events_of(*(stream[i : i + 1] for i in range(len(stream)))) == expected  # byte by byte


def test_crlf_line_breaks_split_between_chunks_still_end_an_event() -> None:
    assert events_of(b"data: one\r", b"\n\r", b"\ndata: two\r\n\r\n") == [(None, "one"), (None, "two")]


def test_a_stream_cut_after_its_last_data_line_still_delivers_it() -> None:
    assert events_of(b"data: first\n\ndata: last") == [(None, "first"), (None, "last")]


def test_a_long_event_in_many_small_chunks_arrives_whole() -> None:
    payload = "x" * 200_000
    body = f"data: {payload}\n\n".encode()
    assert events_of(*(body[i : i + 1000] for i in range(0, len(body), 1000))) == [(None, payload)]


def test_bare_cr_line_breaks_end_lines_even_at_the_end_of_the_stream() -> None:
    assert events_of(b"data: x\r", b"data: y") == [(None, "x\ny")]
    assert events_of(b"data: x\r\r", b"data: y") == [(None, "x"), (None, "y")]


def test_a_line_that_never_ends_is_refused() -> None:
    from vallum.gateway import sse

    chunk = b"data: " + b"x" * 1024 * 1024
    with pytest.raises(ValueError, match="longer than"):
        events_of(*[chunk] * (sse.MAX_LINE_BYTES // len(chunk) + 2))


# ---- the stream relay -----------------------------------------------------------------------------------


class CannedStream:
    """An upstream body delivered in the given network reads."""

    def __init__(self, *reads: bytes) -> None:
        self.reads = reads

    async def chunks(self) -> AsyncIterator[bytes]:
        for read in self.reads:
            yield read


def relayed(*reads: bytes, api: str = "openai") -> list[bytes]:
    from vallum.core.guard import Guard
    from vallum.core.types import Identity
    from vallum.gateway.inspection import StageRecord
    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.streams import OutputContext, relay_anthropic, relay_openai
    from vallum.vault import Vault

    vault = Vault(identity=Identity())
    context = OutputContext(
        guard=Guard(),
        vault=vault,
        output_vault=vault.successor(),
        identity=Identity(),
        enforce=True,
        record=StageRecord(),
        metrics=GatewayMetrics(),
        holdback=16,
        min_step=8,
        first_step=8,
        lookahead=None,
        max_wait=1.0,
        keep_text=False,
        on_usage=lambda tokens: None,
        upstream="a",
    )

    async def collect() -> list[bytes]:
        relay = relay_openai if api == "openai" else relay_anthropic
        return [piece async for piece in relay(CannedStream(*reads), context)]  # type: ignore[arg-type]

    return asyncio.run(collect())


def content_event(text: str) -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def test_released_text_leaves_at_once_and_the_other_events_of_a_read_are_batched() -> None:
    words = [f"word{i:02d} " for i in range(12)]
    pieces = relayed(b"".join(content_event(w) for w in words) + b"data: [DONE]\n\n")
    # One read held the whole answer: the first words went out without waiting for the end of it, and the
    # events that released nothing went out with the next release, not one write each.
    assert _text_of(pieces[0]) and b"[DONE]" not in pieces[0]
    assert 2 <= len(pieces) < len(words)
    assert "".join(map(_text_of, pieces)) == "".join(words) and pieces[-1].endswith(b"data: [DONE]\n\n")


def test_text_released_before_a_broken_event_in_the_same_read_still_reaches_the_client() -> None:
    words = [f"word{i:02d} " for i in range(12)]
    pieces = relayed(b"".join(content_event(w) for w in words) + b"data: {not json\n\n")
    released = "".join(map(_text_of, pieces))
    assert released and "".join(words).startswith(released)  # what had passed the scanner, in order
    assert b'"upstream_stream_broken"' in pieces[-1] and not any(b"[DONE]" in p for p in pieces)


def test_anthropic_events_typed_only_on_their_event_line_are_relayed() -> None:
    reads = (
        b'event: message_start\ndata: {"message": {"id": "m1", "usage": {"input_tokens": 3}}}\n\n'
        b"event: ping\ndata: {}\n\n"
        b"event: message_stop\ndata: {}\n\n"
    )
    (piece,) = relayed(reads, api="anthropic")
    assert (
        b"event: message_start\n" in piece and b"event: ping\n" in piece and b"event: message_stop\n" in piece
    )
    assert b"error" not in piece


def _text_of(piece: bytes) -> str:
    text = ""
    for line in piece.decode().split("\n"):
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    return text


def test_upstream_proxies_come_from_the_environment_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vallum.gateway.upstream import Connections

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "llm.internal")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    connections = Connections(10)
    assert connections.proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert connections.proxy("https://llm.internal/v1") is None
    assert connections.proxy("http://127.0.0.1:8001/v1") is None  # no HTTP_PROXY set

    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")  # no scheme, as often written: an HTTP proxy
    monkeypatch.setenv("ALL_PROXY", "http://fallback.internal:8080")
    connections = Connections(10)
    assert connections.proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert connections.proxy("http://vllm.lan:8000/v1") == "http://fallback.internal:8080"


def test_cookies_an_upstream_sets_are_not_sent_with_later_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's pool is shared by every client: a session cookie must not pass from one to the next."""
    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.upstream import Connections, UpstreamClient

    seen: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            seen.append(head)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            body = b'{"ok": true}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nset-cookie: session=alice-secret; Path=/\r\n"
                b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
            )
            await writer.drain()

    async def scenario() -> None:
        server = await asyncio.start_server(upstream, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # A host name: cookie jars refuse cookies from bare IP addresses, which would hide the problem.
        settings = config(upstreams=[{"name": "a", "base_url": f"http://localhost:{port}/v1"}]).upstreams[0]
        connections = Connections(10)
        client = UpstreamClient(settings, connections, GatewayMetrics())
        for _ in range(2):
            response = await client.send("chat/completions", "m", b"{}", {}, stream=False)
            assert response.status_code == 200 and response.content == b'{"ok": true}'
            response.close()
        await connections.close()
        server.close()

    monkeypatch.delenv("HTTP_PROXY", raising=False)
    asyncio.run(scenario())
    assert len(seen) == 2 and b"alice-secret" not in seen[1]


def test_an_answer_read_whole_must_arrive_within_timeout_s_even_when_it_trickles() -> None:
    """A byte every 0.1 s never leaves a long silence, yet the answer as a whole is late: 504."""
    import time

    from vallum.gateway.errors import GatewayError
    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.upstream import Connections, UpstreamClient

    async def trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n")
        for _ in range(40):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.1)

    async def scenario() -> tuple[int, str, float]:
        server = await asyncio.start_server(trickling, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = config(
            upstreams=[
                {"name": "a", "base_url": f"http://127.0.0.1:{port}/v1", "timeout_s": 0.5, "retries": 0}
            ]
        ).upstreams[0]
        connections = Connections(10)
        client = UpstreamClient(settings, connections, GatewayMetrics())
        started = time.monotonic()
        try:
            await client.send("chat/completions", "m", b"{}", {}, stream=False)
        except GatewayError as exc:
            return exc.status, exc.code, time.monotonic() - started
        finally:
            await connections.close()
            server.close()
        raise AssertionError("a trickling answer was accepted")

    status, code, elapsed = asyncio.run(scenario())
    assert (status, code) == (504, "upstream_timeout") and elapsed < 2.0


def test_redirects_are_not_followed_so_the_prompt_and_key_stay_with_the_upstream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vallum.gateway.metrics import GatewayMetrics
    from vallum.gateway.upstream import Connections, UpstreamClient

    elsewhere: list[bytes] = []

    async def other_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        elsewhere.append(await reader.read(65536))
        writer.close()

    async def scenario() -> int:
        trap = await asyncio.start_server(other_host, "127.0.0.1", 0)
        trap_port = trap.sockets[0].getsockname()[1]

        async def redirecting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            writer.write(
                b"HTTP/1.1 307 Temporary Redirect\r\ncontent-length: 0\r\n"
                b"location: http://127.0.0.1:%d/v1/messages\r\n\r\n" % trap_port
            )
            await writer.drain()

        server = await asyncio.start_server(redirecting, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = config(
            upstreams=[
                {
                    "name": "a",
                    "kind": "anthropic",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                    "api_key_env": "VALLUM_TEST_ANTHROPIC_KEY",
                }
            ]
        ).upstreams[0]
        connections = Connections(10)
        client = UpstreamClient(settings, connections, GatewayMetrics())
        response = await client.send("messages", "m", b'{"prompt": "private"}', {}, stream=False)
        response.close()
        await asyncio.sleep(0.1)  # time for a followed redirect to arrive, were it followed
        await connections.close()
        server.close()
        trap.close()
        return response.status_code

    monkeypatch.setenv("VALLUM_TEST_ANTHROPIC_KEY", "sk-ant-secret")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    assert asyncio.run(scenario()) == 307
    assert elsewhere == []
