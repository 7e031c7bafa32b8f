"""With tracing on, a custom event posted to the API is one trace: the request, the start of
the journey it triggers, the workflow, its delivery activity and the provider send."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.scene import PATIENCE_S, SceneFactory, journey, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.observe import tracing
from tidings.runs.start import activate_trigger


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)


def chain(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    """The names from ``span`` up to its root."""
    names = [span.name]
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_a_custom_event_is_one_trace_from_request_to_provider_send(
    scene: SceneFactory, spans: InMemorySpanExporter
) -> None:
    async with scene() as s:
        await s.profile("dora")
        journey_id = f"traced-{uuid.uuid4().hex[:6]}"
        definition = journey(push("hello"), id=journey_id, trigger={"event": "arrived"})
        await activate_trigger(s.db, definition)
        assert (await s.event("dora", "arrived"))["started"] == [journey_id]
        entry = s.client.get_workflow_handle(entry_workflow_id(journey_id, "dora"))
        await asyncio.wait_for(entry.result(), PATIENCE_S)

    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished if span.context is not None}
    sends = [span for span in finished if span.name.startswith("push.send")]
    assert len(sends) == 1
    path = chain(sends[0], by_id)
    root = by_id[next(i for i, s in by_id.items() if s.name == path[-1])]
    assert path[-1].startswith("POST /v1/events"), path
    assert any(name.startswith("RunActivity:") for name in path), path
    assert any(name.startswith("StartActivity:") for name in path), path
    assert "SignalWithStartWorkflow:JourneyCohort" in path, path
    # the workflow's own span is in the same trace (TracingInterceptor makes it a sibling)
    assert root.context is not None
    in_trace = {
        s.name for s in finished if s.context and s.context.trace_id == root.context.trace_id
    }
    assert "RunWorkflow:JourneyCohort" in in_trace, in_trace


async def test_tracing_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert not tracing.requested()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert tracing.requested()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.requested()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.requested()
