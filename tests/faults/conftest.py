"""The fault suite's tests: bench/faults.py (its modules live in bench/faultlib)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faults: runs the reduced fault suite (bench/faults.py --quick) on both stores side "
        "by side: minutes of wall time, mostly waiting for faults to pass",
    )
