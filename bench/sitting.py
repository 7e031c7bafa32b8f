"""Every target of the second performance round in one sitting, on both stores, and a report
that checks each figure against its target.

    python bench/sitting.py --out results.jsonl [--store sqlite postgres] [--million]
    python bench/sitting.py --report results.jsonl

The benchmarks run one after another (never side by side: each needs the machine to itself),
each in its own fresh stack, and every result is appended to ``--out`` as soon as it is in,
with the machine's load before and after, so an interrupted sitting keeps what it measured
and a later one can append to the same file. ``--million`` adds the 700,000-profile
broadcast (about 1.05 million devices) on each store, after everything else.
``--report`` prints the tables bench/README.md records, with each target's verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    args: tuple[str, ...]


STEPS = (
    Step("broadcast-20k", "broadcast.py", ("--profiles", "20000")),
    # the naive design beside it: one cohort (workflow) per profile
    Step("per-profile-500", "broadcast.py", ("--profiles", "500", "--cohort-size", "1")),
    Step("triggered-50", "triggered.py", ("--rate", "50", "--seconds", "60")),
    Step(
        "triggered-20-beside-broadcast",
        "triggered.py",
        ("--rate", "20", "--seconds", "60", "--broadcast", "20000"),
    ),
    # 62,000 profiles: about 121,000 interactions, 60 s at 2,000/s, as a backend relays them
    Step(
        "interactions-2000-batch",
        "interactions.py",
        ("--profiles", "62000", "--rate", "2000", "--batch", "20"),
    ),
    # one report per request, as apps send them: 15,000 profiles, about 15 s of it
    Step("interactions-2000", "interactions.py", ("--profiles", "15000", "--rate", "2000")),
)
MILLION = Step("broadcast-700k", "broadcast.py", ("--profiles", "700000"))


def run_step(step: Step, store: str) -> dict[str, Any]:
    command = [sys.executable, str(HERE / step.script), *step.args, "--store", store]
    load_before = os.getloadavg()
    started = time.time()
    finished = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = finished.stdout.strip().splitlines()
    record: dict[str, Any] = {
        "step": step.name,
        "store": store,
        "command": " ".join(["python", f"bench/{step.script}", *step.args, "--store", store]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in os.getloadavg()],
        "exit_code": finished.returncode,
    }
    if finished.returncode == 0 and lines:
        record["result"] = json.loads(lines[-1])
    return record


def sit(args: argparse.Namespace) -> None:
    plan = [(step, store) for store in args.store for step in STEPS]
    if args.million:
        plan += [(MILLION, store) for store in args.store]
    if args.only:
        plan = [(step, store) for step, store in plan if step.name in args.only]
    for step, store in plan:
        print(f"[sitting {time.strftime('%H:%M:%S')}] {step.name} on {store}", file=sys.stderr)
        record = run_step(step, store)
        with Path(args.out).open("a") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        verdict = "ok" if "result" in record else f"FAILED (exit {record['exit_code']})"
        print(f"[sitting] {step.name} on {store}: {verdict}", file=sys.stderr, flush=True)


def load(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The last successful result of each step on each store."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if "result" in record:
            found[(record["step"], record["store"])] = record
    return found


def cpu_total(cpu: dict[str, float], roles: tuple[str, ...]) -> float:
    return round(sum(cpu.get(role, 0.0) for role in roles), 1)


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{role} {value:,}" for role, value in sorted(cpu.items()))


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


Row = Callable[[dict[str, Any], dict[tuple[str, str], dict[str, Any]], str], list[str]]


def table(
    title: str,
    head: list[str],
    step: str,
    row: Row,
    found: dict[tuple[str, str], dict[str, Any]],
) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(["store", *head]) + " |")
    print("|" + "---|" * (len(head) + 1))
    for store in ("sqlite", "postgres"):
        record = found.get((step, store))
        if record is not None:
            cells = row(record["result"], found, store)
            print("| " + " | ".join([store, *cells]) + " |")


def broadcast_row(r: dict[str, Any], _: Any, __: str) -> list[str]:
    return [
        f"{r['profiles']:,} / {r['devices']:,}",
        str(r["cohort_size"]),
        f"{r['deliveries_per_s']:,}",
        f"{r['ceiling_per_s']:,}",
        f"{r['ratio']} ({mark(r['ratio'] >= 0.8)} if 20k)",
        f"{r['history_events_per_push']} ({mark(r['history_events_per_push'] <= 0.02)})",
        f"{r['devices_missing']} / {r['pushes_beyond_one']}",
        cpu_text(r["cpu_us_per_push"]),
        f"{r['ceiling_cpu_us_per_push']:,}",
        f"{r['worker_peak_rss_mb']}",
    ]


BROADCAST_HEAD = [
    "profiles / devices",
    "cohort",
    "deliveries/s",
    "ceiling/s",
    "ratio",
    "history events/push",
    "missing / beyond one",
    "CPU µs/push by process",
    "senders alone µs/push",
    "worker peak RSS MB",
]


def million_row(
    r: dict[str, Any], found: dict[tuple[str, str], dict[str, Any]], store: str
) -> list[str]:
    small = found.get(("broadcast-20k", store))
    share = r["deliveries_per_s"] / small["result"]["deliveries_per_s"] if small else None
    return [
        f"{r['profiles']:,} / {r['devices']:,}",
        f"{r['seeding_profiles_per_s']:,}",
        f"{r['deliveries_per_s']:,}"
        + (f" ({share:.2f} of 20k: {mark(share >= 0.9)})" if share else ""),
        f"{r['devices_missing']} / {r['pushes_beyond_one']}"
        f" ({mark(r['devices_missing'] == 0 and r['pushes_beyond_one'] == 0)})",
        f"{r['worker_peak_rss_mb']} ({mark(r['worker_peak_rss_mb'] <= 400)})",
        f"{r['temporal_rss_mb']}",
        f"{r['temporal_db_mb']}",
        f"{r['store_mb']}",
        cpu_text(r["cpu_us_per_push"]),
    ]


def triggered_row(r: dict[str, Any], _: Any, __: str) -> list[str]:
    cpu = r["cpu_ms_per_trigger"]
    total = cpu_total(cpu, ("api", "worker", "temporal"))
    broadcast = r.get("broadcast", {})
    return [
        f"{r['triggers_per_s']}",
        f"{r['p50_ms']:,}",
        f"{r['p99_ms']:,} ({mark(r['p99_ms'] <= 500)})",
        f"{r['duplicate_pushes']} ({mark(r['duplicate_pushes'] == 0)})",
        f"{r['pushes']} of {r['triggers']}",
        f"{total} ({mark(total <= 30)})",
        cpu_text(cpu),
        f"{broadcast['deliveries_per_s']:,} (covered: {broadcast['covered']})" if broadcast else "",
    ]


TRIGGERED_HEAD = [
    "triggers/s",
    "p50 ms",
    "p99 ms",
    "duplicates",
    "pushed",
    "API+worker+Temporal ms",
    "CPU ms/trigger by process",
    "broadcast deliveries/s",
]


def interactions_row(r: dict[str, Any], _: Any, __: str) -> list[str]:
    return [
        f"{r['interactions']:,} ({r['reports_per_request']} a request)",
        f"{r['interactions_per_s']:,} of {r['offered_per_s']:,}",
        f"{r['api_p50_ms']}",
        f"{r['api_p99_ms']} ({mark(r['api_p99_ms'] <= 100)})",
        f"{r['history_events_per_interaction']}"
        f" ({mark(r['history_events_per_interaction'] <= 0.05)})",
        f"{r['applied']:,} ({mark(r['applied'] == r['interactions'])})",
        f"{r['forward_lag_s']}",
        cpu_text(r.get("cpu_us_per_interaction", {})),
    ]


INTERACTIONS_HEAD = [
    "interactions",
    "per s",
    "API p50 ms",
    "API p99 ms",
    "history events each",
    "applied",
    "forward lag s",
    "CPU µs/interaction by process",
]


def report(path: str) -> None:
    found = load(path)
    print("| step | store | started (UTC) | minutes | load before | load after |")
    print("|---|---|---|---|---|---|")
    for record in sorted(found.values(), key=lambda r: r["started"]):
        print(
            f"| {record['step']} | {record['store']} | {record['started']} | "
            f"{record['minutes']} | {record['load_before'][0]} | {record['load_after'][0]} |"
        )
    table("Broadcast, N = 20,000", BROADCAST_HEAD, "broadcast-20k", broadcast_row, found)
    table("Per profile (cohorts of 1)", BROADCAST_HEAD, "per-profile-500", broadcast_row, found)
    million_head = [
        "profiles / devices",
        "seeding profiles/s",
        "deliveries/s",
        "missing / beyond one",
        "worker peak RSS MB",
        "Temporal RSS MB",
        "Temporal db MB",
        "store MB",
        "CPU µs/push by process",
    ]
    table("A million devices", million_head, "broadcast-700k", million_row, found)
    table("Triggered, 50/s", TRIGGERED_HEAD, "triggered-50", triggered_row, found)
    table(
        "Triggered, 20/s beside a 20,000-profile broadcast",
        TRIGGERED_HEAD,
        "triggered-20-beside-broadcast",
        triggered_row,
        found,
    )
    for step, what in (
        ("interactions-2000-batch", "20 reports a request"),
        ("interactions-2000", "one report a request"),
    ):
        table(f"Interactions, 2,000/s, {what}", INTERACTIONS_HEAD, step, interactions_row, found)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="the results file (JSON lines), appended to")
    parser.add_argument("--store", nargs="+", choices=["sqlite", "postgres"])
    parser.add_argument("--million", action="store_true", help="add the 700,000-profile runs")
    parser.add_argument("--only", nargs="+", help="only these steps (by name)")
    parser.add_argument("--report", metavar="FILE", help="print the tables of a results file")
    arguments = parser.parse_args()
    if arguments.report:
        report(arguments.report)
    elif arguments.out:
        arguments.store = arguments.store or ["sqlite", "postgres"]
        sit(arguments)
    else:
        parser.error("give --out FILE to sit, or --report FILE to print one")
