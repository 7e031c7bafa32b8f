"""The fault suite: break a broadcast in the ways tidings promises to survive, and check that
every valid device still got exactly one push per push node.

    python bench/faults.py [--store sqlite|postgres|both] [--profiles N] [--quick]
                           [--scenario NAME ...] [--home DIR]

Each store gets its own processes, each owned by PID: Temporal's dev server, the simulators
(`python -m tidings.sim`), for PostgreSQL a private server (initdb and the postmaster in a
temporary directory, on a free port), and per trial `worker.py` processes. Every trial seeds a
fresh database (about 1.5 devices a profile, iOS and Android mixed, 3 % of the tokens
answered as unregistered by the simulators), starts a broadcast, breaks something while it
runs, and judges the result against the simulators' own records and the store's ledger.

Prints a markdown table per store (for bench/README.md), then one JSON object as the last
line; exits 1 when a check failed. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from common import bench_home, emit, log
from faultlib.processes import SetupError
from faultlib.scenarios import FULL, QUICK, SCENARIOS
from faultlib.trial import Suite, TrialResult, run_store
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

STORES = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: list[TrialResult]) -> str:
    """One markdown row per trial."""
    header = [
        "scenario",
        "devices",
        "completed",
        "wall s",
        "first push s",
        "disruptions",
        "lost",
        "extra copies",
        "max per device",
        "max per disruption",
        "unexplained extra",
        "shown twice",
        "delivered, not accepted",
        "accepted, not delivered",
        "unknown",
        "unregistered not invalidated",
        "valid invalidated",
        "checks",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        f = r.findings
        checks = "pass" if not r.failed else "FAIL"
        cells = [
            r.scenario,
            _cell(r.devices),
            _cell(r.completed),
            _cell(r.wall_s),
            _cell(r.first_push_s),
            _cell(r.disruptions),
            _cell(f.lost),
            _cell(f.extra),
            _cell(f.extra_max_per_device),
            _cell(f.extra_max_per_disruption if r.disruptions else None),
            _cell(f.extra_unexplained),
            _cell(f.shown_twice),
            _cell(f.delivered_not_accepted),
            _cell(f.accepted_not_delivered),
            _cell(f.unknown),
            _cell(f.unregistered_not_invalidated),
            _cell(f.valid_invalidated),
            checks,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _scenario_list() -> str:
    return "\n".join(f"  {name:<18}{s.summary}" for name, s in SCENARIOS.items())


async def main(args: argparse.Namespace) -> int:
    # the suite takes Temporal down on purpose: its own client's retry warnings are expected
    Runtime.set_default(
        Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")
                )
            )
        ),
        error_if_already_set=False,
    )
    size = QUICK if args.quick else FULL
    if args.profiles:
        size = size.but(profiles=args.profiles)
    if args.send_concurrency:
        size = size.but(send_concurrency=args.send_concurrency)
    names = args.scenario or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}\n{_scenario_list()}")
    scenarios = [SCENARIOS[n] for n in names]
    suite = Suite(size=size, seed=args.seed, jobs=args.jobs, keep_evidence=bool(args.home))
    by_store: dict[str, list[TrialResult]] = {}
    for store in STORES[args.store]:
        with bench_home(args.home and f"{args.home}/{store}") as home:
            try:
                by_store[store] = await run_store(home, store, suite, scenarios)
            except SetupError as error:
                log(f"{store}: cannot run: {error}")
                raise SystemExit(2) from None
    failed = False
    for store, results in by_store.items():
        print(f"\n### {store}, {size.profiles:,} profiles\n")
        print(table(results))
        for r in results:
            if "held_up_s" in r.notes:
                print(f"\n- {r.scenario}: the run was held up {r.notes['held_up_s']} s")
            if r.failed:
                failed = True
                print(f"\n- {r.scenario}: " + "; ".join(r.failed))
        print(flush=True)
    emit(
        {
            "profiles": size.profiles,
            "quick": args.quick,
            "passed": not failed,
            "trials": [r.to_json() for results in by_store.values() for r in results],
        }
    )
    return 1 if failed else 0


async def until_signalled(args: argparse.Namespace) -> int:
    """``main``, cancelled by SIGINT or SIGTERM so every process the suite started is
    stopped on the way out (background shells ignore SIGINT unless a handler is set)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await main(args)
    except asyncio.CancelledError:
        log("stopped by a signal; the suite's processes are stopped")
        return 130


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="scenarios:\n" + _scenario_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--store", choices=sorted(STORES), default="both")
    parser.add_argument("--profiles", type=int, default=None, help="default 3000 (quick: 300)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the reduced suite CI runs: fewer profiles and kills, shorter storms and outage",
    )
    parser.add_argument("--scenario", nargs="+", metavar="NAME", help="default: all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trials of a store run side by side (restarts of shared servers run alone); "
        "1 for figures to compare",
    )
    parser.add_argument(
        "--send-concurrency",
        type=int,
        default=None,
        help="the workers' provider requests in flight, also the extra copies one "
        "disruption may cause (default: the setting's default, 256; quick: 32)",
    )
    parser.add_argument(
        "--home",
        help="directory for the run's state, kept with each trial's evidence (records, "
        "ledger, devices: <home>/<store>/trials/<scenario>/evidence.json); default: a "
        "temporary one",
    )
    sys.exit(asyncio.run(until_signalled(parser.parse_args())))
