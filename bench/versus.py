"""One benchmark of this tree against the same benchmark of an older git ref, in one sitting.

    python bench/versus.py --ref a49870e --rounds 3 -- broadcast.py --profiles 20000

Each round runs ``REF``'s own ``bench/<script>`` (from its tree, exported with ``git
archive``, on its own schema and its own stack) and this tree's, the order alternating
between rounds, so both see the same machine. ``broadcast.py --baseline`` compares two
workers in one stack instead, which needs both trees to share a schema; this needs nothing
shared but the interpreter.

The last line of output is one JSON object: for each side, each round's last JSON line, then
``ratios``: for every numeric field both sides report, this tree's median over ``REF``'s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, emit, export_tree, log


def run_script(tree: Path, script_args: list[str]) -> dict[str, Any]:
    """The benchmark's result: the last line it printed, a JSON object."""
    script, *rest = script_args
    completed = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *rest],
        cwd=tree,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def medians(results: list[dict[str, Any]]) -> dict[str, float]:
    """The median of every numeric top-level field the rounds share."""
    shared = set.intersection(*(set(r) for r in results))
    numeric = {
        key
        for key in shared
        if all(isinstance(r[key], int | float) and not isinstance(r[key], bool) for r in results)
    }
    return {key: statistics.median(r[key] for r in results) for key in sorted(numeric)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the git ref to compare with (a49870e)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- SCRIPT [ITS ARGUMENTS]")
    args = parser.parse_args()
    script_args = [a for a in args.script if a != "--"] or ["broadcast.py"]
    with tempfile.TemporaryDirectory(prefix="tidings-versus-") as scratch:
        older = export_tree(args.ref, Path(scratch) / "ref")
        sides = {"ref": older, "this": REPO}
        results: dict[str, list[dict[str, Any]]] = {"ref": [], "this": []}
        for round_no in range(1, args.rounds + 1):
            # which goes first alternates, so neither always meets a warmer machine
            order = ["ref", "this"] if round_no % 2 else ["this", "ref"]
            for side in order:
                started = time.perf_counter()
                result = run_script(sides[side], script_args)
                results[side].append(result)
                log(f"round {round_no} {side}: {time.perf_counter() - started:.0f} s")
    ref_medians, this_medians = medians(results["ref"]), medians(results["this"])
    emit(
        {
            "ref": args.ref,
            "script": script_args,
            "ref_rounds": results["ref"],
            "this_rounds": results["this"],
            "ratios": {
                key: round(this_medians[key] / ref_medians[key], 3)
                for key in sorted(set(ref_medians) & set(this_medians))
                if ref_medians[key]
            },
        }
    )


if __name__ == "__main__":
    main()
