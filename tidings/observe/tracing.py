"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it.

Turned on by ``OTEL_TRACES_EXPORTER`` (otlp or console) or an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true``; ``OTEL_SERVICE_NAME`` names the process (default: tidings) and the
exporter reads its own OTEL_EXPORTER_OTLP_* variables. Then the API's requests (FastAPI),
every Temporal client call and workflow and activity (temporalio.contrib.opentelemetry's
TracingInterceptor, its context carried in Temporal headers) and each provider send are
spans of one trace.

Off, nothing here is imported beyond this module and no span is made: the hot paths ask
:func:`active` and go on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

_provider: TracerProvider | None = None
_configured = False


def requested() -> bool:
    """Whether the environment asks for traces."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure() -> bool:
    """Set tracing up from the environment, once a process; whether it is on."""
    global _configured
    if not _configured:
        _configured = True
        if _provider is None and requested():
            _install_from_environment()
    return _provider is not None


def _install_from_environment() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "tidings")})
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use_provider(provider)


def use_provider(provider: TracerProvider | None) -> None:
    """Trace into ``provider`` (None: stop tracing): what :func:`configure` does from the
    environment, and what tests do with an in-memory exporter."""
    global _provider, _configured
    _provider = provider
    _configured = True


def active() -> bool:
    return _provider is not None


def tracer() -> Tracer:
    assert _provider is not None
    return _provider.get_tracer("tidings")


def temporal_interceptors() -> list[Any]:
    """The interceptors a Temporal client (and the workers on it) carries: tracing's, when on."""
    if not configure():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


def has_tracing(interceptors: Any) -> bool:
    if not active():
        return False
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return any(isinstance(i, TracingInterceptor) for i in interceptors)


def instrument(app: FastAPI) -> None:
    """Spans for the API's requests, when tracing is on."""
    if not configure():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider)


@contextlib.contextmanager
def provider_send_span(provider: str, count: int) -> Iterator[None]:
    """A span around one provider's share of a batch (no span at all when tracing is off)."""
    if _provider is None:
        yield
        return
    attributes: dict[str, str | int] = {"messaging.system": provider, "tidings.push.count": count}
    with tracer().start_as_current_span(f"push.send {provider}", attributes=attributes):
        yield


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to store beside work done later elsewhere
    (an event row a forwarder picks up): :func:`continued` resumes the trace from it."""
    if _provider is None:
        return None
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Run the block in the trace a stored traceparent names (nothing when off or absent)."""
    if _provider is None or not traceparent:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        context.detach(token)
