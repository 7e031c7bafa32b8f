"""The worker's data converter: tidings' pydantic converter, with one type-adapter cache for
every workflow run.

The workflow sandbox builds a fresh payload converter for every workflow run it starts, and
pydantic's converter keeps its ``TypeAdapter`` cache on the converter instance: every new run
then rebuilt the validators of its input (a journey definition is a large pydantic union)
before its first step. A cohort of one (a triggered journey) paid that for each trigger.
Sharing one JSON converter across the instances keeps the adapters the first run built; the
payloads are the same bytes either way, so workers with either converter interoperate.

The types the workflows decode come from passed-through modules (``workflows.contracts``,
``activities.contracts``), so they are the same objects in every run and hit the cache. A
type defined inside a sandboxed module is a new object per run: it misses, and the cache's
bound keeps those few entries (and the run they belong to) from accumulating.
"""

from __future__ import annotations

import dataclasses
import importlib

from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

# enough for every input, result and signal type of the journey workflows, several times
TYPE_ADAPTER_CACHE_SIZE = 256

# the modules whose types are every workflow's inputs, results and signals
CONTRACT_MODULES = ("workflows.contracts", "activities.contracts")


_SHARED_JSON = PydanticJSONPlainPayloadConverter(max_cached_type_adapters=TYPE_ADAPTER_CACHE_SIZE)


def warm_type_adapters() -> int:
    """Build the adapters of every contract type now, in the worker's main thread, before
    any workflow runs. Built by the first workflow tasks instead, several threads at once
    while modules they name may still be importing, an adapter could be left "not fully
    defined", and stay so in the cache for the process' life, failing every workflow task
    of its type; and no workflow task pays for building one. Returns how many were built."""
    built = 0
    for name in CONTRACT_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if defined_here and isinstance(value, type) and dataclasses.is_dataclass(value):
                _SHARED_JSON._type_adapter(value)
                built += 1
    return built


class SharedCachePydanticPayloadConverter(CompositePayloadConverter):
    """``temporalio.contrib.pydantic.PydanticPayloadConverter`` whose JSON converter (and so
    its type adapters) is one per process, not one per instance."""

    def __init__(self) -> None:
        super().__init__(
            *(
                _SHARED_JSON if isinstance(converter, JSONPlainPayloadConverter) else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


def with_shared_type_adapters(converter: DataConverter) -> DataConverter:
    """The same converter (codec, failure converter) with the shared-cache payload
    converter."""
    return dataclasses.replace(
        converter, payload_converter_class=SharedCachePydanticPayloadConverter
    )
