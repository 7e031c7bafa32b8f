"""The journey designer's operations, shared by starter.py and the `tidings` command."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from tidings.journeys.validation import load_definition
from tidings.runs import start_run
from tidings.runtime import build_worker, worker_resources
from tidings.settings import Settings
from tidings.stack import running, temporal_server
from tidings.store.db import Database
from tidings.store.reports import Funnel, run_funnel
from tidings.temporal import configured_address, connect
from tidings.worker_main import prepare_store


def read_profile_ids(path: Path) -> list[str]:
    """One profile id per line (a CSV's first column); blank lines and # comments skipped."""
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        value = line.split(",", 1)[0].strip()
        if value and not value.startswith("#"):
            ids.append(value)
    return ids


@contextlib.asynccontextmanager
async def engine(settings: Settings) -> AsyncIterator[tuple[Client, Database]]:
    """A Temporal client and the store; in embedded mode also the dev server and a worker,
    so a run started from a laptop makes progress while the command waits."""
    prepare_store(settings)
    async with temporal_server(settings) as address:
        client = await connect(address)
        if configured_address() is not None:
            database = Database(settings.resolved_database_url)
            try:
                yield client, database
            finally:
                await database.dispose()
            return
        async with (
            worker_resources(settings) as resources,
            running(build_worker(client, settings, resources)),
        ):
            yield client, resources.db


async def start_and_report(
    settings: Settings,
    journey_file: Path,
    profile_ids: Sequence[str] | None,
    console: Console,
    *,
    wait: bool = True,
) -> Funnel | None:
    journey = load_definition(journey_file)
    async with engine(settings) as (client, database):
        started = await start_run(client, database, settings, journey, profile_ids=profile_ids)
        console.print(f"started run [bold]{started.run_id}[/] of journey {journey.id!r}")
        if not wait:
            return None
        result = await started.handle.result()
        if result.stopped:
            console.print(f"[red]sends stopped:[/] {result.stopped}")
        async with database.read() as session:
            funnel = await run_funnel(session, started.run_id)
    print_funnel(console, f"run {started.run_id}", funnel)
    return funnel


def print_funnel(console: Console, title: str, funnel: Funnel) -> None:
    table = Table(title=title, header_style="bold")
    table.add_column("step")
    table.add_column("count", justify="right")
    for label, value in (
        ("profiles targeted", funnel.profiles_targeted),
        ("pushes sent", funnel.pushes_sent),
        ("delivered", funnel.delivered),
        ("tokens invalidated", funnel.tokens_invalidated),
        ("opened", funnel.opened),
        ("clicked", funnel.clicked),
    ):
        table.add_row(label, str(value))
    console.print(table)
    for reason, count in sorted(funnel.not_sent_reasons.items()):
        console.print(f"  not sent, {reason}: {count}")
