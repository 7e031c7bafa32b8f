"""`tidings runs export RUN`: a run's pushes and interactions as NDJSON, on the same service
layer as GET /v1/runs/{id}/export."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidings.cli.designer import _settings, problem

errors = Console(stderr=True)


def export_run(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write here instead of stdout")
    ] = None,
) -> None:
    """Every push of the run and every interaction on them, as NDJSON (what
    GET /v1/runs/{id}/export streams), read page by page."""
    from tidings.runs.errors import RunNotFound
    from tidings.runs.export import export_run as lines_of
    from tidings.stack import store_only

    settings = _settings()

    async def go() -> None:
        async with store_only(settings) as database:
            stream = lines_of(database, run_id)
            if output is None:
                async for line in stream:
                    sys.stdout.buffer.write(line)
                sys.stdout.buffer.flush()
                return
            with output.open("wb") as handle:
                async for line in stream:
                    handle.write(line)

    try:
        asyncio.run(go())
    except RunNotFound as error:
        errors.print(problem(error, "cannot do that:"))
        raise typer.Exit(1) from None
