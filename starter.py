"""Journey designers' entry point: start a journey for an audience and print its outcome.

python starter.py start journeys/welcome.yaml                # every profile with a device
python starter.py start journeys/welcome.yaml --profiles ids.csv
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tidings.designer import read_profile_ids, start_and_report
from tidings.journeys.validation import JourneyInvalid
from tidings.logs import configure_logging
from tidings.runs import StartError
from tidings.settings import Settings

app = typer.Typer(help="Start and inspect tidings journeys.", no_args_is_help=True)
console = Console()


@app.command()
def start(
    journey: Annotated[Path, typer.Argument(help="journey file (YAML or JSON)", dir_okay=False)],
    profiles: Annotated[
        Path | None,
        typer.Option(help="file of profile ids, one per line; default: the app's audience"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="wait for the run and print its funnel")] = True,
) -> None:
    """Start a journey and print its funnel when it ends."""
    settings = Settings()
    configure_logging("WARNING")
    ids = read_profile_ids(profiles) if profiles else None
    try:
        asyncio.run(start_and_report(settings, journey, ids, console, wait=wait))
    except (JourneyInvalid, StartError) as error:
        Console(stderr=True).print(f"[red]cannot start:[/] {error}")
        raise typer.Exit(1) from None


@app.callback()
def _main() -> None:
    """tidings' starter."""


if __name__ == "__main__":
    app()
