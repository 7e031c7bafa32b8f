"""Ops' entry point: run a tidings worker.

Without TEMPORAL_ADDRESS it joins the embedded Temporal dev server (state under .tidings/),
starting it if none runs, and leaves it running when it stops; with it, it joins that cluster.
Scale out by running more of these, on more machines.
"""

from __future__ import annotations

import asyncio

from tidings.logs import configure_logging
from tidings.startup import configuration_errors, load_settings
from tidings.worker.main import run_worker


def main() -> None:
    with configuration_errors("worker.py"):
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
