"""The console in a real browser: Debian's chromium driven by Playwright (no browser
download), the API served over a real socket by uvicorn on the test's stack."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from tests.engine.conftest import scene  # noqa: F401  (the real stack, reused)

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser's executable: skipped without one, except in CI, which installs it."""
    found = chromium_path()
    if found is None:
        reason = "no chromium on this machine (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: required when CI=true")
        pytest.skip(reason)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    return found


@dataclass
class Served:
    url: str


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[Served]:
    """``app`` behind uvicorn on a free loopback port, its lifespan running."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
