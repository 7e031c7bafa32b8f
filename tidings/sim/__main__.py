"""``python -m tidings.sim``: serve the simulators until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from .runner import SimulatorsRunning, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tidings.sim", description=__doc__)
    parser.add_argument("--home", type=Path, default=Path(".tidings"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--apns-port", type=int, default=0)
    parser.add_argument("--fcm-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--scenario", type=Path, default=None, help="YAML or JSON scenario file")
    parser.add_argument(
        "--no-record-payloads",
        action="store_true",
        help="keep records without payloads and headers (benchmarks: less memory)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(
            serve(
                args.home,
                args.host,
                args.apns_port,
                args.fcm_port,
                args.control_port,
                args.scenario,
                record_payloads=not args.no_record_payloads,
            )
        )
    except SimulatorsRunning as error:
        sys.exit(f"python -m tidings.sim: {error}")


if __name__ == "__main__":
    main()
