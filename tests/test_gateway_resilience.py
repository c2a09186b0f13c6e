"""The gateway under bad input, failing upstreams, failing detectors, hung-up clients and shutdown.

Everything goes over real loopback HTTP: raw httpx where the request must be malformed, the official SDKs
(without their own retries) where a user's application would see the failure.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import anthropic
import httpx
import openai
import pytest

from tests.gateway_env import Running, running_gateway
from tests.loopback import serve_in_thread, serving
from vallum.core.detector import ALL_SOURCES
from vallum.core.guard import Guard
from vallum.core.types import Finding, Source
from vallum.gateway import Gateway, GatewayConfig
from vallum.gateway.server import uvicorn_options
from vallum.text.normalize import NormalizedText
from vallum.upstream_sim import create_app

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
MAX_BODY_BYTES = 2048
MAX_MESSAGES = 8
BODY_TIMEOUT_S = 0.3
FAST_RETRIES = {"retries": 2, "backoff_s": 0.05}
LONG = "The quarterly report shows steady growth across all regions. " * 5


def chat(content: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"model": "sim-echo", "messages": [{"role": "user", "content": content}], **fields}


def anthropic_message(content: str = "hello", **fields: Any) -> dict[str, Any]:
    return {
        "model": "sim-echo",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


def openai_client(gw: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-test", max_retries=0)


def anthropic_client(gw: Running) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-test", max_retries=0)


def error_code(response: httpx.Response) -> str:
    """The stable code of a gateway error, in either API's shape."""
    body = response.json()
    return str(body["error"]["vallum"]["code"] if body.get("type") == "error" else body["error"]["code"])


def data_lines(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]


def new_events(gw: Running, before: int, *, status: int, code: str | None, wait_s: float = 3.0) -> list[dict]:
    """Events recorded since the first `before`, with this status and code (polled: streams record late)."""
    deadline = time.monotonic() + wait_s
    while True:
        found = [e for e in gw.events()[before:] if e["status"] == status and e["code"] == code]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- bad input ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    limits = {
        "max_body_bytes": MAX_BODY_BYTES,
        "max_messages": MAX_MESSAGES,
        "body_timeout_s": BODY_TIMEOUT_S,
    }
    with running_gateway(tmp_path_factory.mktemp("resilience"), limits=limits) as running:
        yield running


Send = Callable[[str], httpx.Response]  # sends one request to the gateway at this base URL


def post(path: str, content: bytes) -> Send:
    def send(url: str) -> httpx.Response:
        return httpx.post(url + path, content=content, headers={"content-type": "application/json"})

    return send


def post_json(path: str, body: object) -> Send:
    return post(path, json.dumps(body).encode())


def chunked_too_large(url: str) -> httpx.Response:
    """A body sent chunked, so without Content-Length, that grows past the limit as it arrives."""

    def grow() -> Iterator[bytes]:
        yield b'{"model": "sim-echo", "messages": [{"role": "user", "content": "'
        for _ in range(2 * MAX_BODY_BYTES // 100):
            yield b"x" * 100
        yield b'"}]}'

    return httpx.post(url + CHAT, content=grow(), headers={"content-type": "application/json"})


def slow_upload(url: str) -> httpx.Response:
    """A valid body that trickles in over about three times the gateway's body timeout."""
    body = json.dumps(chat("slowly")).encode()

    async def trickle() -> AsyncIterator[bytes]:
        for start in range(0, len(body), len(body) // 5 + 1):
            yield body[start : start + len(body) // 5 + 1]
            await asyncio.sleep(BODY_TIMEOUT_S / 2)

    async def send() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(url + CHAT, content=trickle())

    return asyncio.run(send())


TOO_MANY = {"model": "sim-echo", "messages": [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)}

BAD_INPUTS = [
    pytest.param(
        post(CHAT, b'{"model": "sim-echo", "messages": ['), 400, "invalid_json", id="malformed_json"
    ),
    pytest.param(post(MESSAGES, b"{model: sim-echo}"), 400, "invalid_json", id="malformed_json_anthropic"),
    pytest.param(
        post_json(CHAT, {"model": "sim-echo", "messages": "hi"}), 400, "invalid_request", id="messages_str"
    ),
    pytest.param(post_json(CHAT, chat(42)), 400, "invalid_request", id="content_int"),
    pytest.param(post_json(CHAT, [chat()]), 400, "invalid_request", id="array_body"),
    pytest.param(
        post(CHAT, b"x" * (MAX_BODY_BYTES + 1)), 413, "body_too_large", id="content_length_too_large"
    ),
    pytest.param(chunked_too_large, 413, "body_too_large", id="chunked_too_large"),
    pytest.param(post(CHAT, b'{"model": "sim-echo\xff"}'), 400, "invalid_utf8", id="invalid_utf8"),
    pytest.param(slow_upload, 408, "body_timeout", id="slow_upload"),
    pytest.param(post_json(CHAT, TOO_MANY), 400, "too_many_messages", id="too_many_messages"),
]


@pytest.mark.parametrize(("send", "status", "code"), BAD_INPUTS)
def test_bad_input_is_refused_with_its_status_and_code(
    gw: Running, send: Send, status: int, code: str
) -> None:
    response = send(gw.url)
    assert (response.status_code, error_code(response)) == (status, code)


@pytest.mark.parametrize(("send", "status", "code"), BAD_INPUTS)
def test_bad_input_is_recorded_as_an_event(gw: Running, send: Send, status: int, code: str) -> None:
    before = len(gw.events())
    send(gw.url)
    assert len(new_events(gw, before, status=status, code=code)) == 1


@pytest.mark.parametrize(("send", "status", "code"), BAD_INPUTS)
def test_the_gateway_still_serves_after_bad_input(gw: Running, send: Send, status: int, code: str) -> None:
    send(gw.url)
    answer = httpx.post(gw.url + CHAT, json=chat("still there?"))
    assert answer.json()["choices"][0]["message"]["content"] == "You said: still there?"


def test_malformed_json_is_an_openai_shaped_error_on_chat_completions(gw: Running) -> None:
    error = post(CHAT, b'{"model": ')(gw.url).json()["error"]
    assert (error["code"], error["type"], "JSON" in error["message"]) == (
        "invalid_json",
        "invalid_request_error",
        True,
    )


def test_malformed_json_is_an_anthropic_shaped_error_on_messages(gw: Running) -> None:
    body = post(MESSAGES, b'{"model": ')(gw.url).json()
    error = body["error"]
    shape = (body["type"], error["type"], error["vallum"]["code"], "JSON" in error["message"])
    assert shape == ("error", "invalid_request_error", "invalid_json", True)


def test_messages_that_are_not_a_list_are_refused_naming_the_field(gw: Running) -> None:
    error = post_json(CHAT, {"model": "sim-echo", "messages": "hi"})(gw.url).json()["error"]
    assert (error["param"], error["message"].split(":")[0]) == ("messages", "messages")


def test_content_that_is_a_number_is_refused_naming_the_field(gw: Running) -> None:
    error = post_json(CHAT, chat(42))(gw.url).json()["error"]
    assert (error["param"], error["message"].split(":")[0]) == ("messages.0.content", "messages.0.content")


def test_a_wrongly_typed_anthropic_field_is_refused_naming_the_field(gw: Running) -> None:
    response = post_json(MESSAGES, anthropic_message(max_tokens="lots"))(gw.url)
    assert response.json()["error"]["vallum"]["param"] == "max_tokens"


def test_unknown_fields_are_passed_on_to_the_upstream(gw: Running) -> None:
    extra = {"seed": 7, "vendor_option": {"nested": [1, "two"]}}
    message = {"role": "user", "content": "hello", "name": "alice"}
    httpx.post(gw.url + CHAT, json={"model": "sim-echo", "messages": [message], **extra}).raise_for_status()
    sent = gw.upstream_requests()[-1]["body"]
    assert (sent["seed"], sent["vendor_option"], sent["messages"][0]["name"]) == (
        7,
        extra["vendor_option"],
        "alice",
    )


# ---- upstream faults ----------------------------------------------------------------------------------------


def test_an_upstream_5xx_is_passed_through_after_retries(tmp_path: Path) -> None:
    with (
        running_gateway(tmp_path, upstream=FAST_RETRIES) as gw,
        openai_client(gw) as client,
        pytest.raises(openai.InternalServerError) as raised,
    ):
        client.chat.completions.create(**chat("#sim:status=503"))
    assert (raised.value.status_code, raised.value.code) == (503, "simulated_status")


def test_an_upstream_5xx_is_tried_once_more_per_retry(tmp_path: Path) -> None:
    with running_gateway(tmp_path, upstream=FAST_RETRIES) as gw:
        httpx.post(gw.url + CHAT, json=chat("#sim:status=503"))
        assert len(gw.upstream_requests()) == FAST_RETRIES["retries"] + 1


def test_an_upstream_4xx_is_passed_through_without_retrying(tmp_path: Path) -> None:
    with running_gateway(tmp_path, upstream=FAST_RETRIES) as gw:
        response = httpx.post(gw.url + CHAT, json=chat("#sim:status=400"))
        assert (response.status_code, len(gw.upstream_requests())) == (400, 1)


def test_a_hanging_upstream_times_out_with_504(tmp_path: Path) -> None:
    with running_gateway(tmp_path, upstream={"timeout_s": 0.5}) as gw, openai_client(gw) as client:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(**chat("#sim:hang"))
        elapsed = time.monotonic() - started
    assert (raised.value.status_code, raised.value.code) == (504, "upstream_timeout")
    assert 0.5 <= elapsed < 1.5


def test_an_answer_that_is_not_json_is_502_upstream_invalid_response(tmp_path: Path) -> None:
    with (
        running_gateway(tmp_path) as gw,
        openai_client(gw) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        client.chat.completions.create(**chat("#sim:garbage"))
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_invalid_response")


def test_a_truncated_answer_is_502_upstream_invalid_response(tmp_path: Path) -> None:
    with (
        running_gateway(tmp_path) as gw,
        anthropic_client(gw) as client,
        pytest.raises(anthropic.APIStatusError) as raised,
    ):
        client.messages.create(**anthropic_message("#sim:break"))
    assert (raised.value.status_code, raised.value.body["error"]["vallum"]["code"]) == (
        502,
        "upstream_invalid_response",
    )


@contextmanager
def gateway_with_unreachable_upstream(tmp_path: Path) -> Iterator[Running]:
    """Models named down-* go to an upstream nothing listens on; every other model to the simulator."""
    with serve_in_thread(create_app()) as sim_url:
        config = GatewayConfig.model_validate(
            {
                "upstreams": [
                    {"name": "sim", "base_url": f"{sim_url}/v1"},
                    {"name": "down", "base_url": f"http://127.0.0.1:{closed_port()}/v1", **FAST_RETRIES},
                ],
                "routes": [{"model": "down-*", "upstream": "down"}, {"model": "*", "upstream": "sim"}],
                "events": {"sink": "jsonl", "path": str(tmp_path / "events.jsonl")},
                "database_url": f"sqlite:///{tmp_path / 'vallum.db'}",
                "limits": {"max_loop_lag_ms": 10_000},
            }
        )
        gateway = Gateway(config)
        with serve_in_thread(gateway.app()) as url:
            yield Running(url, sim_url, gateway, tmp_path / "events.jsonl")


def test_an_unreachable_upstream_is_502_upstream_unavailable(tmp_path: Path) -> None:
    with (
        gateway_with_unreachable_upstream(tmp_path) as gw,
        openai_client(gw) as client,
        pytest.raises(openai.APIStatusError) as raised,
    ):
        client.chat.completions.create(**chat(model="down-large"))
    assert (raised.value.status_code, raised.value.code) == (502, "upstream_unavailable")


def test_an_unreachable_upstream_is_retried_with_backoff_before_giving_up(tmp_path: Path) -> None:
    with gateway_with_unreachable_upstream(tmp_path) as gw:
        started = time.monotonic()
        httpx.post(gw.url + CHAT, json=chat(model="down-large"))
        elapsed = time.monotonic() - started
    backoffs = FAST_RETRIES["backoff_s"] * (1 + 2)  # 0.05 s, then 0.1 s
    assert backoffs <= elapsed < backoffs + 1.0


def test_an_unreachable_upstream_leaves_the_other_upstreams_serving(tmp_path: Path) -> None:
    with gateway_with_unreachable_upstream(tmp_path) as gw:
        httpx.post(gw.url + CHAT, json=chat(model="down-large"))
        answer = httpx.post(gw.url + CHAT, json=chat("fine?"))
        assert answer.json()["choices"][0]["message"]["content"] == "You said: fine?"


BREAKER = {"retries": 0, "breaker": {"failures": 2, "reset_s": 0.5}}


@contextmanager
def tripped_breaker(tmp_path: Path) -> Iterator[Running]:
    """A gateway whose only upstream has just failed twice in a row, which opens its circuit."""
    with running_gateway(tmp_path, upstream=BREAKER) as gw:
        for _ in range(2):
            assert httpx.post(gw.url + CHAT, json=chat("#sim:status=500")).status_code == 500
        yield gw


def test_an_open_circuit_refuses_with_503_upstream_circuit_open(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        response = httpx.post(gw.url + CHAT, json=chat("a good request"))
    assert (response.status_code, error_code(response)) == (503, "upstream_circuit_open")


def test_an_open_circuit_refuses_without_calling_the_upstream(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        httpx.post(gw.url + CHAT, json=chat("a good request"))
        assert len(gw.upstream_requests()) == 2  # the two failures that opened it


def test_an_open_circuit_tells_the_client_when_to_retry(tmp_path: Path) -> None:
    with (
        tripped_breaker(tmp_path) as gw,
        anthropic_client(gw) as client,
        pytest.raises(anthropic.APIStatusError) as raised,
    ):
        client.messages.create(**anthropic_message())
    assert (raised.value.status_code, raised.value.response.headers["retry-after"]) == (503, "1")


def test_readyz_reports_an_open_circuit_with_503(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        response = httpx.get(gw.url + "/readyz")
    assert (response.status_code, response.json()["open_circuits"]) == (503, ["sim"])


def test_a_good_request_after_reset_closes_the_circuit(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        time.sleep(BREAKER["breaker"]["reset_s"] + 0.1)
        trial = httpx.post(gw.url + CHAT, json=chat("trial"))
        after = httpx.post(gw.url + CHAT, json=chat("after"))
        ready = httpx.get(gw.url + "/readyz")
    assert (trial.status_code, after.status_code, ready.status_code) == (200, 200, 200)


def test_a_failed_trial_after_reset_opens_the_circuit_again(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        time.sleep(BREAKER["breaker"]["reset_s"] + 0.1)
        httpx.post(gw.url + CHAT, json=chat("#sim:status=500"))
        response = httpx.post(gw.url + CHAT, json=chat("a good request"))
    assert (response.status_code, error_code(response)) == (503, "upstream_circuit_open")


def test_a_trial_request_whose_client_gives_up_lets_the_next_request_try(tmp_path: Path) -> None:
    with tripped_breaker(tmp_path) as gw:
        time.sleep(BREAKER["breaker"]["reset_s"] + 0.1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.url + CHAT, json=chat("#sim:hang"), timeout=0.3)
        response = httpx.post(gw.url + CHAT, json=chat("next"))
    assert response.status_code == 200


def test_a_stream_broken_midway_raises_in_the_openai_sdk(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw, openai_client(gw) as client:
        stream = client.chat.completions.create(**chat(LONG + "#sim:break"), stream=True)
        with pytest.raises(openai.APIError) as raised:
            for _ in stream:
                pass
    assert raised.value.code == "upstream_stream_broken"


def test_a_stream_broken_midway_raises_in_the_anthropic_sdk(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw, anthropic_client(gw) as client:
        stream = client.messages.create(**anthropic_message(LONG + "#sim:break"), stream=True)
        with pytest.raises(anthropic.APIStatusError) as raised:
            for _ in stream:
                pass
    assert raised.value.body["error"]["vallum"]["code"] == "upstream_stream_broken"


def test_a_broken_stream_is_recorded_with_its_code(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw:
        httpx.post(gw.url + CHAT, json=chat(LONG + "#sim:break", stream=True))
        assert len(new_events(gw, 0, status=200, code="upstream_stream_broken")) == 1


def test_a_stream_that_stalls_ends_with_an_upstream_timeout_error(tmp_path: Path) -> None:
    with running_gateway(tmp_path, upstream={"timeout_s": 0.2}) as gw:
        response = httpx.post(gw.url + CHAT, json=chat("#sim:chunk_delay=0.4\n#sim:chunk=64", stream=True))
    assert json.loads(data_lines(response)[-1])["error"]["code"] == "upstream_timeout"


def test_an_anthropic_stream_that_stalls_ends_with_an_upstream_timeout_error(tmp_path: Path) -> None:
    with running_gateway(tmp_path, upstream={"timeout_s": 0.2}) as gw:
        body = anthropic_message("#sim:chunk_delay=0.4\n#sim:chunk=64", stream=True)
        response = httpx.post(gw.url + MESSAGES, json=body)
    assert json.loads(data_lines(response)[-1])["error"]["vallum"]["code"] == "upstream_timeout"


# ---- clients that hang up -----------------------------------------------------------------------------------


def test_a_client_that_gives_up_is_recorded_as_client_disconnected(tmp_path: Path) -> None:
    # #sim:hang answers only when its caller goes away, so the simulator finishes only if the gateway
    # cancels its upstream call when the client leaves.
    with running_gateway(tmp_path) as gw:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.url + CHAT, json=chat("#sim:hang"), timeout=0.3)
        assert len(new_events(gw, 0, status=499, code="client_disconnected")) == 1


def test_the_gateway_still_answers_after_a_client_gave_up(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as gw:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(gw.url + CHAT, json=chat("#sim:hang"), timeout=0.3)
        answer = httpx.post(gw.url + CHAT, json=chat("still there?"), timeout=2)
        assert answer.json()["choices"][0]["message"]["content"] == "You said: still there?"


def test_a_stream_client_that_hangs_up_is_recorded_as_client_disconnected(tmp_path: Path) -> None:
    slow = chat(LONG + "#sim:chunk_delay=0.05\n#sim:chunk=16", stream=True)  # about a second
    with running_gateway(tmp_path) as gw:
        with httpx.stream("POST", gw.url + CHAT, json=slow) as response:
            next(response.iter_raw())
        assert len(new_events(gw, 0, status=499, code="client_disconnected")) == 1


# ---- detectors that fail --------------------------------------------------------------------------------------


class BrokenDetector:
    """A detector whose model file has gone missing: every call raises."""

    name: ClassVar[str] = "broken"
    categories: ClassVar[tuple[str, ...]] = ("injection",)
    sources: ClassVar[frozenset[Source]] = ALL_SOURCES

    def detect(self, text: NormalizedText, source: Source, paranoia: int) -> list[Finding]:
        raise RuntimeError("model file vanished")


@contextmanager
def gateway_with_broken_detector(tmp_path: Path, fail_mode: str) -> Iterator[Running]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: broken-{fail_mode}\nfail_mode: {fail_mode}\ndetectors:\n  secrets: {{}}\n")
    with running_gateway(tmp_path, policies={"default": str(policy)}) as gw:
        working = gw.gateway.guards["default"]
        gw.gateway.guards["default"] = Guard(working.policy, detectors=[*working.detectors, BrokenDetector()])
        yield gw


def test_a_failing_detector_blocks_the_request_when_the_policy_fails_closed(tmp_path: Path) -> None:
    with gateway_with_broken_detector(tmp_path, "closed") as gw:
        response = httpx.post(gw.url + CHAT, json=chat())
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["vallum"]["categories"]) == (
        400,
        "input_blocked",
        ["guard"],
    )


def test_a_failing_detector_lets_the_request_through_when_the_policy_fails_open(tmp_path: Path) -> None:
    with gateway_with_broken_detector(tmp_path, "open") as gw:
        response = httpx.post(gw.url + CHAT, json=chat())
    assert response.json()["choices"][0]["message"]["content"] == "You said: hello"


def test_a_failing_detector_is_counted_in_the_metrics_when_the_policy_fails_open(tmp_path: Path) -> None:
    with gateway_with_broken_detector(tmp_path, "open") as gw:
        httpx.post(gw.url + CHAT, json=chat())
        metrics = httpx.get(gw.url + "/metrics").text
    [line] = [m for m in metrics.splitlines() if m.startswith("vallum_detector_errors_total{")]
    assert 'detector="broken"' in line and 'fail_mode="open"' in line and float(line.split()[-1]) > 0


def test_a_failing_detector_is_a_finding_in_the_event_when_the_policy_fails_open(tmp_path: Path) -> None:
    with gateway_with_broken_detector(tmp_path, "open") as gw:
        httpx.post(gw.url + CHAT, json=chat())
        [event] = gw.events()
    assert {(f["detector"], f["subtype"]) for f in event["input"]["findings"]} == {
        ("broken", "detector_error")
    }


# ---- operations ---------------------------------------------------------------------------------------------


def test_healthz_answers_ok(gw: Running) -> None:
    response = httpx.get(gw.url + "/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_answers_ready_when_every_upstream_is_closed(gw: Running) -> None:
    response = httpx.get(gw.url + "/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "open_circuits": []})


def test_shutdown_lets_an_open_stream_finish(tmp_path: Path) -> None:
    words = " ".join(f"w{i:02d}" for i in range(40))  # about 160 characters: 40 chunks of 4, 50 ms apart
    request = chat(words + " #sim:chunk_delay=0.05\n#sim:chunk=4", stream=True)
    with serve_in_thread(create_app()) as sim_url:
        config = GatewayConfig.model_validate(
            {
                "upstreams": [{"name": "sim", "base_url": f"{sim_url}/v1"}],
                "routes": [{"model": "*", "upstream": "sim"}],
                "events": {"sink": "jsonl", "path": str(tmp_path / "events.jsonl")},
                "database_url": f"sqlite:///{tmp_path / 'vallum.db'}",
                "limits": {"max_loop_lag_ms": 10_000},
                "drain_s": 10,
            }
        )
        # The gateway's own uvicorn settings, as `vallum serve` runs it.
        with (
            serving(Gateway(config).app(), **uvicorn_options(config)) as served,
            httpx.stream("POST", served.url + CHAT, json=request) as response,
        ):
            lines = response.iter_lines()
            received = [next(lines)]
            served.server.should_exit = True  # what SIGTERM does
            time.sleep(0.3)
            refusing = refuses_connections(served.url)  # shutting down indeed, with the stream still open
            received += lines
    data = [line.removeprefix("data: ") for line in received if line.startswith("data: ")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, data[:-1]))
    assert (refusing, text, data[-1]) == (True, f"You said: {words}", "[DONE]")


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(url + "/healthz")
    except httpx.ConnectError:
        return True
    return False


def test_a_fractional_drain_time_is_rounded_up_for_uvicorn() -> None:
    # uvicorn takes whole seconds; rounding 0.5 down would cancel every open stream at once.
    assert uvicorn_options(GatewayConfig(drain_s=0.5))["timeout_graceful_shutdown"] == 1


def test_requests_over_the_in_flight_limit_are_shed_with_503(tmp_path: Path) -> None:
    with running_gateway(tmp_path, limits={"max_in_flight": 1}) as gw:
        hanging = threading.Thread(
            target=lambda: httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "sim-echo", "messages": [{"role": "user", "content": "#sim:delay=1\nHi"}]},
                timeout=5,
            )
        )
        hanging.start()
        time.sleep(0.3)
        shed = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "sim-echo", "messages": []})
        health = httpx.get(f"{gw.url}/healthz")
        hanging.join()
        after = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "sim-echo", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"
    assert shed.headers["retry-after"] == "1"
    assert health.status_code == 200  # operational routes are never shed
    assert after.status_code == 200


# ---- upstreams whose streams are well-formed SSE but odd inside -------------------------------------------

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def scripted_stream_upstream(events: list[tuple[str | None, dict[str, Any]]]) -> Any:
    """An upstream that answers every request with these SSE events, whatever was asked."""
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def answer(request: Any) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for event, data in events:
                head = f"event: {event}\n" if event else ""
                yield f"{head}data: {json.dumps(data)}\n\n".encode()
            if events and events[0][0] is None:
                yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/{endpoint:path}", answer, methods=["POST"])])


def test_anthropic_text_for_a_block_already_closed_is_still_scanned(tmp_path: Path) -> None:
    events: list[tuple[str | None, dict[str, Any]]] = [
        (
            "message_start",
            {"type": "message_start", "message": {"id": "m", "role": "assistant", "usage": {}}},
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": f"key {AWS_KEY}"},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    with (
        serve_in_thread(scripted_stream_upstream(events)) as upstream,
        running_gateway(tmp_path, upstream={"base_url": f"{upstream}/v1"}) as gw,
    ):
        streamed = httpx.post(gw.url + "/v1/messages", json=anthropic_message("hi", stream=True)).text
    assert AWS_KEY not in streamed


def test_a_stream_event_with_a_field_of_the_wrong_type_ends_with_an_error(tmp_path: Path) -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    events: list[tuple[str | None, dict[str, Any]]] = [
        (None, {**chunk, "choices": [{"index": 0, "delta": {"content": "fine so far"}}]}),
        (None, {**chunk, "choices": [], "usage": {"total_tokens": "many"}}),
    ]
    with (
        serve_in_thread(scripted_stream_upstream(events)) as upstream,
        running_gateway(tmp_path, upstream={"base_url": f"{upstream}/v1"}) as gw,
    ):
        before = len(gw.events())
        streamed = httpx.post(gw.url + CHAT, json=chat("hi", stream=True)).text
        assert "upstream_stream_broken" in streamed and "malformed event" in streamed
        assert len(new_events(gw, before, status=200, code="upstream_stream_broken")) == 1
