"""The `tidings` command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidings.logs import configure_logging
from tidings.settings import Settings

app = typer.Typer(
    help="tidings: push-notification journeys on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="The store's schema.", no_args_is_help=True)
journeys_app = typer.Typer(help="Journey definitions.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(journeys_app, name="journeys")
console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level)
    return settings


@app.command()
def demo(
    profiles: Annotated[int, typer.Option(min=1, max=100_000, help="profiles to seed")] = 200,
) -> None:
    """Run the whole product on the embedded stack and print a funnel."""
    from tidings.demo import DemoOptions, run_demo

    settings = _settings()
    configure_logging("WARNING")
    asyncio.run(run_demo(settings, DemoOptions(profiles=profiles), console))


@app.command()
def start(
    journey: Annotated[Path, typer.Argument(help="journey file (YAML or JSON)", dir_okay=False)],
    profiles: Annotated[
        Path | None,
        typer.Option(help="file of profile ids, one per line; default: the app's audience"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait for the run and print its funnel")] = True,
) -> None:
    """Start a journey (the same as `python starter.py start`)."""
    from tidings.designer import read_profile_ids, start_and_report
    from tidings.journeys.validation import JourneyInvalid
    from tidings.runs import StartError

    settings = _settings()
    ids = read_profile_ids(profiles) if profiles else None
    try:
        asyncio.run(start_and_report(settings, journey, ids, console, wait=wait))
    except (JourneyInvalid, StartError) as error:
        errors.print(f"[red]cannot start:[/] {error}")
        raise typer.Exit(1) from None


@app.command()
def worker() -> None:
    """Run a worker (the same as `python worker.py`)."""
    from tidings.worker_main import run_worker

    asyncio.run(run_worker(_settings()))


@app.command()
def api() -> None:
    """Serve the HTTP API (OpenAPI at /docs)."""
    import uvicorn

    from tidings.api.app import create_app
    from tidings.store.migrate import check_schema

    settings = _settings()
    check_schema(settings.resolved_database_url)
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port)


@app.command()
def sim(
    apns_port: Annotated[int, typer.Option(help="0 picks a free port")] = 0,
    fcm_port: int = 0,
    control_port: int = 0,
    scenario: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
) -> None:
    """Serve the APNs and FCM simulators; their endpoints go to <home>/sim/endpoints.json."""
    from tidings.sim import read_endpoints, serve

    settings = _settings()
    ready = asyncio.Event()

    async def serve_and_announce() -> None:
        task = asyncio.create_task(
            serve(settings.home, "127.0.0.1", apns_port, fcm_port, control_port, scenario, ready)
        )
        await ready.wait()
        endpoints = read_endpoints(settings.home)
        console.print("simulators ready; point tidings at them with:")
        console.print(f"  export TIDINGS_APNS_ENDPOINT={endpoints['apns_endpoint']}")
        console.print(f"  export TIDINGS_FCM_ENDPOINT={endpoints['fcm_endpoint']}")
        console.print(f"  export TIDINGS_PROVIDER_CA_FILE={endpoints['ca_file']}")
        console.print(f"control API: {endpoints['control_url']}/docs")
        await task

    asyncio.run(serve_and_announce())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the store's migrations."""
    from tidings.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.resolved_database_url)
    console.print("the store is up to date")


@journeys_app.command("validate")
def journeys_validate(path: Annotated[Path, typer.Argument(dir_okay=False)]) -> None:
    """Check a journey file; list every problem with its node and field."""
    from tidings.journeys.validation import JourneyInvalid, load_definition

    try:
        journey = load_definition(path)
    except JourneyInvalid as error:
        for issue in error.issues:
            errors.print(f"[red]✗[/] {issue}")
        raise typer.Exit(1) from None
    console.print(f"[green]✓[/] {path}: journey {journey.id!r}, {len(journey.nodes)} nodes")


def main() -> None:
    app()
