"""What the APNs and FCM simulators share: records, the scenario and unregistered tokens."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .records import Provider, RecordStore, SimRecord
from .scenario import Scenario, ScenarioState


class SimulatorBase:
    provider: Provider

    def __init__(self, *, record_payloads: bool = True) -> None:
        self.record_payloads = record_payloads
        self._records = RecordStore()
        self._state = ScenarioState()
        self._unregistered: dict[str, int] = {}

    # -- scenario ---------------------------------------------------------------------------

    @property
    def scenario(self) -> Scenario:
        return self._state.scenario

    def set_scenario(self, scenario: Scenario) -> None:
        """Replace the scenario; scripted answers start over, unregistered tokens are added."""
        self._state = ScenarioState(scenario)
        now_ms = int(time.time() * 1000)
        for token, at_ms in scenario.unregistered.items():
            self._unregistered[token] = now_ms if at_ms is None else at_ms

    def mark_unregistered(self, tokens: Iterable[str], at_ms: int | None = None) -> None:
        """From now on these tokens are gone, as of ``at_ms`` (default: now)."""
        stamp = int(time.time() * 1000) if at_ms is None else at_ms
        for token in tokens:
            self._unregistered[token] = stamp

    # -- records ----------------------------------------------------------------------------

    def records(self, tracking_id: str | None = None, token: str | None = None) -> list[SimRecord]:
        """Every request answered, accepted or not, oldest first."""
        return self._records.query(tracking_id=tracking_id, token=token)

    def accepted(self, tracking_id: str | None = None, token: str | None = None) -> list[SimRecord]:
        """Requests answered 200 that were real sends (not validate-only)."""
        return self._records.query(tracking_id=tracking_id, token=token, accepted_only=True)

    def displayed(self, token: str) -> list[SimRecord]:
        """What the device would show: accepted pushes, one per collapse id."""
        return self._records.displayed(token)

    def stats(self) -> dict[str, Any]:
        return self._records.stats()

    def reset(self) -> None:
        """Forget records, the scenario and unregistered tokens; keep credentials."""
        self._records.clear()
        self._state = ScenarioState()
        self._unregistered.clear()
