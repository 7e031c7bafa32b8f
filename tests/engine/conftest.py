"""The journey tests' fixture over the shared scene (tests.scene): the scene with the
interactions forwarder beside the worker and the app ``APP``, built by the test with the
settings it wants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.scene import Scene, SceneFactory, journey_scene
from tidings.sim import Simulators


@pytest.fixture
def scene(
    tmp_path: Path,
    database_url: str,
    temporal_client: Client,
    sims: Simulators,
) -> SceneFactory:
    """``async with scene(**settings) as s``: the stack with its app, on this test's store."""

    @asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Scene]:
        async with journey_scene(
            tmp_path, database_url, temporal_client, sims, **overrides
        ) as built:
            yield built

    return make
