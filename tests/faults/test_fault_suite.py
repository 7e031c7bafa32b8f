"""The reduced fault suite (``bench/faults.py --quick``) on SQLite and on PostgreSQL: every
scenario's broadcast must keep the promise (each valid device gets exactly one push per push
node) and the ledger must agree with what the simulators accepted.

Cost: the two stores run side by side, each as its own ``bench/faults.py`` process with its
own Temporal dev server, simulators, workers (and private PostgreSQL server); expect about
3 to 5 minutes of wall time, most of it waiting for storms, an outage and dead workers'
timeouts to pass. Marked ``faults`` so it can be selected or left out (``-m "not faults"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultlib.processes import postgres_bin_dir
from faultlib.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
TIMEOUT_S = 20 * 60  # far beyond the suite's own deadlines: a hang, not a slow run
JOBS = "5"  # trials of one store side by side (each waits more than it computes)

pytestmark = pytest.mark.faults


def _start(store: str, output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "faults.py"),
                "--quick",
                "--store",
                store,
                "--jobs",
                JOBS,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen[bytes], output: Path) -> dict[str, Any]:
    try:
        process.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        process.wait(timeout=60)
        pytest.fail(f"the fault suite ran past {TIMEOUT_S} s:\n{output.read_text()[-4000:]}")
    text = output.read_text()
    last = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        result: dict[str, Any] = json.loads(last)
    except ValueError:
        pytest.fail(f"the fault suite exited {process.returncode} without results:\n{text[-4000:]}")
    # the exit code says what the results say
    assert process.returncode == (0 if result["passed"] else 1), text[-4000:]
    result["output"] = text
    return result


@pytest.fixture(scope="module")
def suite_results() -> Iterator[dict[str, dict[str, Any]]]:
    """Both stores' suites, started together; PostgreSQL's is None where it cannot run."""
    stores = ["sqlite"]
    if postgres_bin_dir() is not None:
        stores.append("postgres")
    elif IN_CI:
        pytest.fail("CI=true but PostgreSQL's initdb/postgres are not installed")
    with tempfile.TemporaryDirectory(prefix="tidings-faults-test-") as tmp:
        running = {store: _start(store, Path(tmp) / f"{store}.out") for store in stores}
        yield {
            store: _finish(process, Path(tmp) / f"{store}.out")
            for store, process in running.items()
        }


CASES = [
    pytest.param(
        store, name, id=f"{store}-{name}", marks=[pytest.mark.postgres] * (store == "postgres")
    )
    for store in ("sqlite", "postgres")
    for name, scenario in SCENARIOS.items()
    if store == "postgres" or not scenario.postgres_only
]


@pytest.mark.parametrize(("store", "scenario"), CASES)
def test_every_valid_device_gets_one_push_per_node_whatever_fails(
    suite_results: dict[str, dict[str, Any]], store: str, scenario: str
) -> None:
    if store not in suite_results:
        pytest.skip("PostgreSQL's initdb/postgres are not installed")
    trials = {t["scenario"]: t for t in suite_results[store]["trials"]}
    assert scenario in trials, suite_results[store]["output"][-4000:]
    trial = trials[scenario]
    figures = json.dumps(trial, sort_keys=True)

    assert trial["completed"], figures
    assert trial["lost"] == 0, figures
    assert trial["delivered_not_accepted"] == 0, figures
    assert trial["accepted_not_delivered"] == 0, figures
    assert trial["unregistered_not_invalidated"] == 0, figures
    assert trial["valid_invalidated"] == 0, figures
    assert trial["shown_twice"] == 0, figures
    assert trial["extra_unexplained"] == 0, figures
    # a kill or restart may cost at most the sends a worker has in flight at once
    bound = trial["disruptions"] * trial["in_flight_bound"]
    assert trial["extra_after_disruptions"] <= bound, figures
    assert trial["failed"] == [], figures
