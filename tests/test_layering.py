"""Which layer may load what: checked in fresh interpreters, so one test's imports cannot hide
another's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(code: str) -> set[str]:
    """The top-level and tidings modules loaded by running ``code`` in a new interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(output.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["workflows.run", "workflows.cohort", "workflows.scheduled"])
def test_workflows_load_neither_the_store_nor_the_provider_sdks(module: str) -> None:
    loaded = loaded_after(f"import {module}")
    assert not {"sqlmodel", "aioapns", "firebase_admin", "tidings.store.db"} & loaded


def test_the_push_senders_do_not_reach_into_the_store() -> None:
    loaded = loaded_after(
        "import tidings.push.apns, tidings.push.fcm, tidings.push.check, tidings.push.registry"
    )
    assert not {m for m in loaded if m.startswith("tidings.store")}


def test_the_api_loads_neither_the_worker_nor_delivery_nor_the_provider_sdks() -> None:
    """The API stores what it is told and answers; sending and Temporal's worker are the
    workers' business (its credential checks load a provider SDK only when they run)."""
    loaded = loaded_after("import tidings.api.app")
    forbidden = (
        "tidings.worker",
        "activities.delivery",
        "aioapns",
        "firebase_admin",
        "temporalio.worker",
    )
    assert not {m for m in loaded for f in forbidden if m == f or m.startswith(f"{f}.")}
    assert "tidings.api.app" in loaded


def test_the_runs_service_layer_needs_neither_the_worker_nor_the_provider_sdks() -> None:
    """The API and the console start, cancel and report runs through it."""
    loaded = loaded_after(
        "import tidings.runs.start, tidings.runs.cancel, tidings.runs.view, tidings.runs.report,"
        " tidings.runs.journeys, tidings.runs.listing, tidings.runs.pushes, tidings.runs.triggers,"
        " tidings.runs.schedules"
    )
    assert not {"aioapns", "firebase_admin", "tidings.worker.resources", "activities.delivery"} & (
        loaded
    )
