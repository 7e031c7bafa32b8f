"""What the APNs and FCM simulators share: records, the scenario and unregistered tokens."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .records import Provider, RecordStore, SimRecord, TokenSummary
from .scenario import Scenario, ScenarioState
from .wire import Reply


class SimulatorBase:
    provider: Provider

    def __init__(self, *, record_payloads: bool = True) -> None:
        self.record_payloads = record_payloads
        self._records = RecordStore()
        self._state = ScenarioState()
        self._unregistered: dict[str, int] = {}
        # Requests received whose answer is not written yet (and no fault settled them).
        self._in_flight = 0
        # Requests received before the last reset() belong to a test that is over: their
        # late fates are not recorded.
        self._since = 0.0

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

    def _received(self, reply: Reply, record: SimRecord) -> Reply:
        """``reply`` now carries ``record``, to be committed when its fate is known."""
        reply.record = record
        self._in_flight += 1
        return reply

    def commit(self, reply: Reply, unanswered: str | None) -> None:
        """The server wrote ``reply`` (``unanswered`` None: processed) or never will (why)."""
        record = reply.record
        if record is None or record.received_at < self._since:
            return
        self._in_flight -= 1
        self._records.add(record if unanswered is None else record.unanswered(unanswered))

    @property
    def in_flight(self) -> int:
        """Requests received and not processed yet: their answers are still to be written."""
        return self._in_flight

    def records(self, tracking_id: str | None = None, token: str | None = None) -> list[SimRecord]:
        """Every request processed or left unanswered, in the order their fates were known."""
        return self._records.query(tracking_id=tracking_id, token=token)

    def accepted(self, tracking_id: str | None = None, token: str | None = None) -> list[SimRecord]:
        """Requests answered 200 that were real sends (not validate-only)."""
        return self._records.query(tracking_id=tracking_id, token=token, accepted_only=True)

    def displayed(self, token: str) -> list[SimRecord]:
        """What the device shows: accepted pushes, the newest one per display key (APNs
        ``apns-collapse-id``; FCM: ``android.notification.tag`` on Android, the
        ``apns-collapse-id`` header on iOS); data-only pushes each count."""
        return self._records.displayed(token)

    def summary(self) -> dict[str, TokenSummary]:
        """Per token: requests, accepted pushes, distinct tracking ids, notifications shown."""
        return self._records.summary()

    def stats(self) -> dict[str, Any]:
        """Counts of the records (``requests``, ``accepted``, ``by_status``, ``by_reason``, ...)
        and ``in_flight``: requests received whose fate is not known yet."""
        return {**self._records.stats(), "in_flight": self._in_flight}

    def reset(self) -> None:
        """Forget records, the scenario and unregistered tokens; keep credentials."""
        self._records.clear()
        self._state = ScenarioState()
        self._unregistered.clear()
        self._in_flight = 0
        self._since = time.time()
