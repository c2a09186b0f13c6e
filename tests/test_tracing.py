"""OpenTelemetry traces and metrics of gateway requests, read back from the real SDK and a real OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.loopback import serve_in_thread
from vallum.monitor.tracing import DURATION_BUCKETS, TOKEN_BUCKETS, Telemetry, TelemetryConfig


@dataclass
class Recorded:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        self.telemetry.flush()
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        found = [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]
        return [p for p in found if isinstance(p, HistogramDataPoint)]

    def unit(self, name: str) -> str | None:
        data = self.metrics.get_metrics_data()
        assert data is not None
        units = [
            m.unit
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
        ]
        return units[0] if units else None


def attributes_of(point: HistogramDataPoint) -> dict[str, Any]:
    return dict(point.attributes or {})


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    telemetry = Telemetry(span_exporter=spans, metric_reader=metrics)
    yield Recorded(telemetry, spans, metrics)
    telemetry.shutdown()


def test_a_chat_request_is_a_client_span_named_after_operation_and_model(recorded: Recorded) -> None:
    with recorded.telemetry.request_span(
        "chat",
        "openai",
        "gpt-4o",
        "api.openai.com",
        443,
        policy_version="default@52fffbb37359",
        event_id="e1",
    ) as span:
        span.record_usage(
            12, 34, response_model="gpt-4o-2024-08-06", finish_reasons=["stop"], response_id="c-1"
        )
    [s] = recorded.finished()
    assert s.name == "chat gpt-4o" and s.kind is SpanKind.CLIENT
    assert s.status.status_code is StatusCode.UNSET
    assert dict(s.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "server.address": "api.openai.com",
        "server.port": 443,
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.id": "c-1",
        "vallum.policy.version": "default@52fffbb37359",
        "vallum.event.id": "e1",
    }
    assert s.resource.attributes["service.name"] == "vallum"


def test_embeddings_and_model_less_requests_are_named_by_the_conventions(recorded: Recorded) -> None:
    recorded.telemetry.start_request("embeddings", "azure.ai.openai", "text-embedding-3-small").end()
    recorded.telemetry.start_request("chat", "anthropic", None).end()
    names = [s.name for s in recorded.finished()]
    assert names == ["embeddings text-embedding-3-small", "chat"]


def test_guard_verdicts_are_vallum_span_attributes(recorded: Recorded) -> None:
    with recorded.telemetry.request_span("chat", "openai", "gpt-4o") as span:
        span.record_verdict("input", "flag", ["injection", "pii"], 1.5)
        span.record_verdict("output", "redact", ["secrets"], 0.5)
    attributes = dict(recorded.finished()[0].attributes or {})
    assert attributes["vallum.input.action"] == "flag"
    assert attributes["vallum.input.categories"] == ("injection", "pii")
    assert attributes["vallum.input.guard_ms"] == 1.5
    assert attributes["vallum.output.action"] == "redact"
    assert attributes["vallum.output.categories"] == ("secrets",)


def test_an_error_sets_error_type_and_the_span_status(recorded: Recorded) -> None:
    span = recorded.telemetry.start_request("chat", "openai", "gpt-4o")
    span.set_error("input_blocked")
    span.end()
    span.end()  # ending twice records once
    with pytest.raises(TimeoutError), recorded.telemetry.request_span("chat", "openai", "gpt-4o"):
        raise TimeoutError
    with pytest.raises(OSError), recorded.telemetry.request_span("chat", "openai", "gpt-4o") as span:
        span.set_error("upstream_unavailable")  # named by the caller: the exception does not replace it
        raise OSError
    blocked, timed_out, unavailable = recorded.finished()
    assert (
        unavailable.attributes is not None and unavailable.attributes["error.type"] == "upstream_unavailable"
    )
    assert blocked.attributes is not None and blocked.attributes["error.type"] == "input_blocked"
    assert blocked.status.status_code is StatusCode.ERROR
    assert timed_out.attributes is not None and timed_out.attributes["error.type"] == "TimeoutError"
    points = recorded.points("gen_ai.client.operation.duration")
    errors = sorted(str(attributes_of(p).get("error.type")) for p in points)
    assert errors == ["TimeoutError", "input_blocked", "upstream_unavailable"]


def test_duration_and_token_usage_metrics_follow_the_conventions(recorded: Recorded) -> None:
    for tokens_out in (10, 30):
        with recorded.telemetry.request_span("chat", "openai", "gpt-4o", "api.openai.com", 443) as span:
            span.record_usage(100, tokens_out, response_model="gpt-4o-2024-08-06")
    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    [duration] = recorded.points("gen_ai.client.operation.duration")
    assert attributes_of(duration) == common
    assert duration.count == 2 and 0 < duration.sum < 1
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS
    assert recorded.unit("gen_ai.client.operation.duration") == "s"
    usage = {attributes_of(p)["gen_ai.token.type"]: p for p in recorded.points("gen_ai.client.token.usage")}
    assert set(usage) == {"input", "output"}
    assert attributes_of(usage["output"]) == {**common, "gen_ai.token.type": "output"}
    assert (usage["input"].count, usage["input"].sum) == (2, 200)
    assert (usage["output"].count, usage["output"].sum) == (2, 40)
    assert tuple(usage["input"].explicit_bounds) == TOKEN_BUCKETS
    assert recorded.unit("gen_ai.client.token.usage") == "{token}"


def test_the_clients_trace_is_continued_and_propagated_upstream(recorded: Recorded) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    incoming = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    with recorded.telemetry.request_span("chat", "openai", "gpt-4o", parent=incoming) as span:
        upstream = span.propagation_headers()
    [s] = recorded.finished()
    assert s.context is not None and s.parent is not None
    assert f"{s.context.trace_id:032x}" == trace_id and f"{s.parent.span_id:016x}" == parent_id
    assert upstream["traceparent"].startswith(f"00-{trace_id}-{s.context.span_id:016x}-")


def test_disabled_telemetry_is_a_no_op_that_imports_no_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys\n"
        "from vallum.monitor.tracing import Telemetry\n"
        "t = Telemetry.from_env()\n"
        "with t.request_span('chat', 'openai', 'gpt-4o') as span:\n"
        "    span.record_usage(1, 2); span.record_verdict('input', 'block', ['injection'], 1.0)\n"
        "    span.set_error('input_blocked'); assert span.propagation_headers() == {}\n"
        "t.flush(); t.shutdown()\n"
        "print(t.enabled, sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False []"


def test_from_env_needs_an_endpoint_and_honours_otel_sdk_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    assert not Telemetry.from_env().enabled
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Telemetry.from_env().enabled


class Collector:
    """An OTLP/HTTP receiver on loopback that records what each POST carried."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

        async def export(request: Request) -> Response:
            body = await request.body()
            self.received.append(
                {"path": request.url.path, "content_type": request.headers.get("content-type"), "body": body}
            )
            return Response(b"", media_type="application/x-protobuf")  # an empty Export*ServiceResponse

        self.app = Starlette(
            routes=[Route(p, export, methods=["POST"]) for p in ("/v1/traces", "/v1/metrics")]
        )


@pytest.mark.parametrize("configured_by", ["environment", "config"])
def test_the_otlp_exporter_sends_protobuf_to_the_configured_endpoint(
    configured_by: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    collector = Collector()
    with serve_in_thread(collector.app) as url:
        if configured_by == "environment":
            monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            monkeypatch.setenv("OTEL_SERVICE_NAME", "vallum-test")
            telemetry = Telemetry.from_env()
        else:
            telemetry = Telemetry(TelemetryConfig(enabled=True, endpoint=url, service_name="vallum-test"))
        with telemetry.request_span("chat", "openai", "gpt-4o", "127.0.0.1", 8001) as span:
            span.record_usage(5, 7)
        telemetry.flush()
        telemetry.shutdown()
    by_path = {r["path"]: r for r in collector.received}
    assert set(by_path) == {"/v1/traces", "/v1/metrics"}
    assert {r["content_type"] for r in collector.received} == {"application/x-protobuf"}

    traces = ExportTraceServiceRequest.FromString(by_path["/v1/traces"]["body"])
    [resource_spans] = traces.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "vallum-test"
    [span_data] = resource_spans.scope_spans[0].spans
    assert span_data.name == "chat gpt-4o"
    assert {a.key: a.value.int_value for a in span_data.attributes}["gen_ai.usage.output_tokens"] == 7

    metrics = ExportMetricsServiceRequest.FromString(by_path["/v1/metrics"]["body"])
    names = {m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= names
