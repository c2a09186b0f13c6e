"""OpenTelemetry traces and metrics for the gateway, named after the GenAI semantic conventions.

Conventions followed: the GenAI client spans and metrics of the OpenTelemetry semantic conventions from
v1.37 (where `gen_ai.provider.name` replaced `gen_ai.system`) until the GenAI part moved to its own
repository (semantic-conventions-genai, whose main branch renames the inference metrics to
`gen_ai.client.inference.*`); these are the names opentelemetry-semantic-conventions 0.66b2 still ships. One span per gateway
request, named `{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT (the gateway calls the model
for its client), with `gen_ai.*`, `server.*` and `error.type`; `gen_ai.system` is set too, with the same
value, for backends that still read the pre-1.37 name. Vallum's own decisions go under `vallum.*`.
Metrics: `gen_ai.client.operation.duration` (s) and `gen_ai.client.token.usage` ({token}, by
`gen_ai.token.type`) with the bucket boundaries the conventions advise. (Guard latency is a span attribute
here; its histogram is a Prometheus metric: each OpenTelemetry measurement costs ~15 µs of request time.)

Nothing is imported from OpenTelemetry, and every call is a no-op, unless telemetry is configured: by
`OTEL_EXPORTER_OTLP_ENDPOINT` (or its per-signal variants) for `Telemetry.from_env()`, or by
`TelemetryConfig(enabled=True)`. Export is OTLP over HTTP/protobuf, batched on the SDK's own threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from opentelemetry.metrics import Histogram
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

# Advised by the conventions for gen_ai.client.operation.duration and gen_ai.client.token.usage.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = tuple(4.0**i for i in range(14))  # 1, 4, 16, ... 67108864

# Which gen_ai.provider.name to report for each upstream kind of the gateway's config.
PROVIDERS = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic"}


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    # Base URL of the OTLP/HTTP receiver (e.g. http://collector:4318); /v1/traces and /v1/metrics are
    # appended. None leaves it, and the headers, certificates and compression, to the standard
    # OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
    endpoint: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)  # secrets belong in OTEL_EXPORTER_OTLP_HEADERS
    service_name: str = "vallum"
    traces: bool = True
    metrics: bool = True
    metric_export_interval_s: float = Field(60.0, gt=0)
    timeout_s: float | None = Field(None, gt=0)  # None: OTEL_EXPORTER_OTLP_TIMEOUT, else the exporter's 10 s


class RequestSpan:
    """One gateway request's span. This base class records nothing: it is what disabled telemetry hands out."""

    __slots__ = ()

    @property
    def failed(self) -> bool:
        return False

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        response_model: str | None = None,
        finish_reasons: Sequence[str] | None = None,
        response_id: str | None = None,
    ) -> None:
        return None

    def record_verdict(self, stage: str, action: str, categories: Sequence[str], guard_ms: float) -> None:
        """The guard's decision on the request (`stage` "input") or the response ("output")."""
        return None

    def set_error(self, error_type: str) -> None:
        """The request failed: `error_type` is a low-cardinality code, e.g. the gateway's error code."""
        return None

    def propagation_headers(self) -> dict[str, str]:
        """W3C trace-context headers to send upstream, so that the model server's spans join this trace."""
        return {}

    def end(self) -> None:
        return None


_NOOP_SPAN = RequestSpan()
_NOOP_CONTEXT = nullcontext(_NOOP_SPAN)  # stateless, so one instance serves every request


class Telemetry:
    """Entry point: `with telemetry.request_span("chat", "openai", model, host) as span: ...`."""

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        span_exporter: SpanExporter | None = None,
        metric_reader: MetricReader | None = None,
    ) -> None:
        """`span_exporter` / `metric_reader` replace the OTLP ones (tests, other backends) and enable telemetry."""
        self.config = config or TelemetryConfig()
        self.enabled = self.config.enabled or span_exporter is not None or metric_reader is not None
        self._instruments: _Instruments | None = None
        if self.enabled:
            self._instruments = _Instruments.build(self.config, span_exporter, metric_reader)

    @classmethod
    def from_env(cls) -> Telemetry:
        """Enabled when an OTLP endpoint is set in the environment and the SDK is not disabled there."""
        env = os.environ
        endpoint_set = any(
            env.get(v)
            for v in (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            )
        )
        return cls(
            TelemetryConfig(
                enabled=endpoint_set and env.get("OTEL_SDK_DISABLED", "").lower() != "true",
                service_name=env.get("OTEL_SERVICE_NAME") or "vallum",
                traces=env.get("OTEL_TRACES_EXPORTER", "otlp") != "none",
                metrics=env.get("OTEL_METRICS_EXPORTER", "otlp") != "none",
                metric_export_interval_s=_seconds(env.get("OTEL_METRIC_EXPORT_INTERVAL"), default=60.0),
            )
        )

    def start_request(
        self,
        operation: str,
        provider: str,
        model: str | None,
        server_address: str | None = None,
        server_port: int | None = None,
        *,
        policy_version: str | None = None,
        event_id: str | None = None,
        parent: Mapping[str, str] | None = None,
    ) -> RequestSpan:
        """Start the span of one request; call `end()` when its response is complete (streams included).

        `operation` is chat, text_completion or embeddings; `provider` a gen_ai.provider.name (see
        PROVIDERS); `parent` the incoming request's headers, to continue the client's trace.
        """
        if self._instruments is None:
            return _NOOP_SPAN
        return _RecordingSpan(
            self._instruments,
            operation,
            provider,
            model,
            server_address,
            server_port,
            policy_version,
            event_id,
            parent,
        )

    def request_span(
        self,
        operation: str,
        provider: str,
        model: str | None,
        server_address: str | None = None,
        server_port: int | None = None,
        *,
        policy_version: str | None = None,
        event_id: str | None = None,
        parent: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[RequestSpan]:
        """`start_request` as a context manager: ends the span on exit; an exception escaping it is the
        request's error, unless `set_error` already named one."""
        if self._instruments is None:
            return _NOOP_CONTEXT
        span = self.start_request(
            operation,
            provider,
            model,
            server_address,
            server_port,
            policy_version=policy_version,
            event_id=event_id,
            parent=parent,
        )
        return _ending(span)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Export what is buffered now, rather than at the next batch or metric interval."""
        if self._instruments is not None:
            self._instruments.tracer_provider.force_flush(int(timeout_s * 1000))
            self._instruments.meter_provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        if self._instruments is not None:
            self._instruments.tracer_provider.shutdown()
            self._instruments.meter_provider.shutdown()
            self._instruments = None


@contextmanager
def _ending(span: RequestSpan) -> Iterator[RequestSpan]:
    try:
        yield span
    except BaseException as exc:
        if not span.failed:
            span.set_error(type(exc).__qualname__)
        raise
    finally:
        span.end()


class _Instruments:
    """The SDK objects of an enabled Telemetry; built (and OpenTelemetry imported) only when enabled."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider,
        duration: Histogram,
        tokens: Histogram,
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer_provider = tracer_provider
        self.tracer: Tracer = tracer_provider.get_tracer("vallum.gateway", _version())
        self.meter_provider = meter_provider
        self.duration = duration
        self.tokens = tokens
        # Looked up once here so that the per-request code imports nothing.
        self.propagator = TraceContextTextMapPropagator()
        self.client_kind = trace.SpanKind.CLIENT
        self.error_status = trace.Status(trace.StatusCode.ERROR)
        self.in_context = trace.set_span_in_context

    @classmethod
    def build(
        cls, config: TelemetryConfig, span_exporter: SpanExporter | None, metric_reader: MetricReader | None
    ) -> _Instruments:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": config.service_name, "service.version": _version()})
        exporter_options: dict[str, Any] = {}
        if config.timeout_s is not None:
            exporter_options["timeout"] = config.timeout_s
        if config.headers:
            exporter_options["headers"] = config.headers

        def endpoint(signal: str) -> dict[str, Any]:
            base = config.endpoint
            return {"endpoint": f"{base.rstrip('/')}/v1/{signal}"} if base else {}

        tracer_provider = TracerProvider(resource=resource)
        if span_exporter is None and config.traces and config.enabled:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(**endpoint("traces"), **exporter_options)
        if span_exporter is not None:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))

        readers: list[MetricReader] = []
        if metric_reader is not None:
            readers.append(metric_reader)
        elif config.metrics and config.enabled:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(**endpoint("metrics"), **exporter_options),
                    export_interval_millis=config.metric_export_interval_s * 1000,
                )
            )
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = meter_provider.get_meter("vallum.gateway", _version())
        return cls(
            tracer_provider,
            meter_provider,
            meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
        )


def _seconds(milliseconds: str | None, default: float) -> float:
    try:
        value = float(milliseconds or "") / 1000
    except ValueError:
        return default  # as the SDK does with a malformed interval
    return value if value > 0 else default


def _version() -> str:
    try:
        return metadata.version("vallum")
    except metadata.PackageNotFoundError:
        return "unknown"


class _RecordingSpan(RequestSpan):
    __slots__ = (
        "_attrs",
        "_ended",
        "_error",
        "_input_tokens",
        "_instruments",
        "_output_tokens",
        "_span",
        "_start",
    )

    def __init__(
        self,
        instruments: _Instruments,
        operation: str,
        provider: str,
        model: str | None,
        server_address: str | None,
        server_port: int | None,
        policy_version: str | None,
        event_id: str | None,
        parent: Mapping[str, str] | None,
    ) -> None:
        self._instruments = instruments
        # The attributes every metric point of this request carries (the conventions' common set).
        self._attrs: dict[str, str | int] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
        }
        if model:
            self._attrs["gen_ai.request.model"] = model
        if server_address:
            self._attrs["server.address"] = server_address
            if server_port is not None:
                self._attrs["server.port"] = server_port
        span_attrs: dict[str, str | int] = {**self._attrs, "gen_ai.system": provider}
        if policy_version:
            span_attrs["vallum.policy.version"] = policy_version
        if event_id:
            span_attrs["vallum.event.id"] = event_id
        self._span: Span = instruments.tracer.start_span(
            f"{operation} {model}" if model else operation,
            context=instruments.propagator.extract(parent) if parent else None,
            kind=instruments.client_kind,
            attributes=span_attrs,
        )
        self._start = time.perf_counter()
        self._error: str | None = None
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._ended = False

    @property
    def failed(self) -> bool:
        return self._error is not None

    def record_usage(
        self,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        *,
        response_model: str | None = None,
        finish_reasons: Sequence[str] | None = None,
        response_id: str | None = None,
    ) -> None:
        if input_tokens is not None:
            self._input_tokens = input_tokens
            self._span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            self._output_tokens = output_tokens
            self._span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if response_model:
            self._attrs["gen_ai.response.model"] = response_model
            self._span.set_attribute("gen_ai.response.model", response_model)
        if finish_reasons:
            self._span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
        if response_id:
            self._span.set_attribute("gen_ai.response.id", response_id)

    def record_verdict(self, stage: str, action: str, categories: Sequence[str], guard_ms: float) -> None:
        self._span.set_attributes(
            {
                f"vallum.{stage}.action": action,
                f"vallum.{stage}.categories": list(categories),
                f"vallum.{stage}.guard_ms": guard_ms,
            }
        )

    def set_error(self, error_type: str) -> None:
        self._error = error_type
        self._span.set_attribute("error.type", error_type)
        self._span.set_status(self._instruments.error_status)

    def propagation_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        self._instruments.propagator.inject(headers, context=self._instruments.in_context(self._span))
        return headers

    def end(self) -> None:
        if self._ended:
            return
        self._ended = True
        duration_attrs: dict[str, str | int] = dict(self._attrs)
        if self._error is not None:
            duration_attrs["error.type"] = self._error
        self._instruments.duration.record(time.perf_counter() - self._start, duration_attrs)
        for token_type, count in (("input", self._input_tokens), ("output", self._output_tokens)):
            if count is not None:
                self._instruments.tokens.record(count, {**self._attrs, "gen_ai.token.type": token_type})
        self._span.end()
