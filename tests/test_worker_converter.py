"""The worker's data converter: the payload converter the sandbox builds for each workflow
run shares one JSON converter (and its type adapters), and reads and writes the same bytes as
tidings' pydantic converter."""

from __future__ import annotations

from datetime import timedelta

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, pydantic_data_converter
from temporalio.converter import CompositePayloadConverter

from activities.contracts import FrequencyCap
from tidings.journeys import parse_definition
from tidings.store.types import utcnow
from tidings.temporal.converter import (
    SharedCachePydanticPayloadConverter,
    warm_type_adapters,
    with_shared_type_adapters,
)
from workflows.contracts import CohortInput, EngineOptions, InteractionBatch, InteractionEvent

JOURNEY = {
    "id": "welcome",
    "name": "Welcome",
    "app": "app",
    "trigger": {"event": "signed_up"},
    "nodes": [
        {"id": "hello", "type": "push", "content": {"title": "Hi {{ name }}", "body": "b"}},
    ],
}


def cohort_input() -> CohortInput:
    return CohortInput(
        run_id="run-1",
        journey=parse_definition(JOURNEY),
        profile_ids=["p1"],
        options=EngineOptions(
            frequency_cap=FrequencyCap(3, None, None),
            delivery_max_backoff=timedelta(minutes=2),
        ),
        triggered=True,
    )


def test_each_new_payload_converter_shares_the_json_converter() -> None:
    # the sandbox calls the class once per workflow run
    converter_class = with_shared_type_adapters(pydantic_data_converter).payload_converter_class
    first, second = converter_class(), converter_class()
    assert isinstance(first, CompositePayloadConverter)
    assert isinstance(second, CompositePayloadConverter)
    assert first is not second
    assert first.converters[b"json/plain"] is second.converters[b"json/plain"]
    # the stock converter builds a JSON converter (and an empty adapter cache) per instance
    stock_class = pydantic_data_converter.payload_converter_class
    stock_first, stock_second = stock_class(), stock_class()
    assert isinstance(stock_first, CompositePayloadConverter)
    assert isinstance(stock_second, CompositePayloadConverter)
    assert stock_first.converters[b"json/plain"] is not stock_second.converters[b"json/plain"]


def test_payloads_are_the_stock_converters_bytes_both_ways() -> None:
    stock = pydantic_data_converter.payload_converter
    shared = with_shared_type_adapters(pydantic_data_converter).payload_converter
    values = [
        cohort_input(),
        InteractionBatch(
            [InteractionEvent("e1", "p1", "custom", utcnow(), name="signed_up")],
        ),
    ]
    for value in values:
        written = shared.to_payloads([value])
        assert written == stock.to_payloads([value])
        # a worker with either converter reads what the other wrote, run after run
        for _ in range(2):
            for reader in (SharedCachePydanticPayloadConverter(), stock):
                assert reader.from_payloads(written, [type(value)]) == [value]


def test_the_contract_types_adapters_are_built_before_any_workflow_runs() -> None:
    built = warm_type_adapters()
    # every dataclass of both contract modules: inputs, results, signals
    assert built >= 20
    cache = SharedCachePydanticPayloadConverter().converters[b"json/plain"]
    assert isinstance(cache, PydanticJSONPlainPayloadConverter)
    info = cache._type_adapter.cache_info()
    assert info.currsize >= built
    # a workflow's input then decodes from the adapter built at start
    written = cache.to_payload(cohort_input())
    assert written is not None
    assert cache.from_payload(written, CohortInput) == cohort_input()
    assert cache._type_adapter.cache_info().hits > info.hits
    assert cache._type_adapter.cache_info().misses == info.misses
