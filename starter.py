"""Journey designers' entry point: start journeys and follow their runs.

python starter.py start journeys/welcome.yaml               # every profile with a device
python starter.py start welcome --profiles ids.csv          # a stored journey, listed profiles
python starter.py start welcome --where plan=pro --no-wait
python starter.py runs
python starter.py status RUN_ID                             # live: profiles per node, pushes
python starter.py cancel RUN_ID
python starter.py report RUN_ID                             # funnel per node
"""

from __future__ import annotations

import typer

from tidings.cli.designer import register
from tidings.startup import configuration_errors

app = typer.Typer(help="Start and follow tidings journeys.", no_args_is_help=True)
register(app)


if __name__ == "__main__":
    with configuration_errors("starter.py"):
        app()
