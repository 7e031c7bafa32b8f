"""What the simulators answered: one compact record per request, indexed for the tests.

Records stay in memory (a benchmark run holds millions), so a record is a slotted frozen
dataclass and the indexes hold references, not copies. Counters for ``stats()`` are kept as
records arrive rather than recomputed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

Provider = Literal["apns", "fcm"]


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One request a simulator answered (or, for fault actions, deliberately did not).

    ``status`` is the HTTP status sent, or 0 when the scenario answered with a connection
    fault (``reason`` then names the action: ``goaway``, ``reset`` or ``hang``).
    """

    provider: Provider
    token: str
    tracking_id: str | None
    collapse_id: str | None
    status: int
    reason: str | None
    headers: dict[str, str]
    payload: dict[str, Any] | None
    environment: str | None
    validate_only: bool
    received_at: float
    message_id: str | None
    # APNs token auth: a fingerprint of the provider JWT the request carried (never the JWT
    # itself), so tests can count the JWTs a client minted
    provider_token: str | None = None

    @property
    def accepted(self) -> bool:
        """Accepted for delivery: a 200 that was not a validate-only request."""
        return self.status == 200 and not self.validate_only

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimRecord:
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**values)


class RecordStore:
    """All records of one simulator, indexed by tracking id and by token."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._all: list[SimRecord] = []
        self._by_tracking: defaultdict[str, list[SimRecord]] = defaultdict(list)
        self._by_token: defaultdict[str, list[SimRecord]] = defaultdict(list)
        self._by_status: Counter[int] = Counter()
        self._by_reason: Counter[str] = Counter()
        self._accepted = 0
        self._validate_only = 0

    def add(self, record: SimRecord) -> None:
        self._all.append(record)
        if record.tracking_id is not None:
            self._by_tracking[record.tracking_id].append(record)
        self._by_token[record.token].append(record)
        self._by_status[record.status] += 1
        if record.reason is not None:
            self._by_reason[record.reason] += 1
        if record.validate_only:
            self._validate_only += 1
        elif record.status == 200:
            self._accepted += 1

    def query(
        self,
        *,
        tracking_id: str | None = None,
        token: str | None = None,
        accepted_only: bool = False,
    ) -> list[SimRecord]:
        if tracking_id is not None:
            found = self._by_tracking.get(tracking_id, [])
            if token is not None:
                found = [r for r in found if r.token == token]
        elif token is not None:
            found = self._by_token.get(token, [])
        else:
            found = self._all
        if accepted_only:
            return [r for r in found if r.accepted]
        return list(found)

    def displayed(self, token: str) -> list[SimRecord]:
        """What the device shows: accepted pushes, the newest one per collapse id.

        A push without a collapse id is never collapsed. Order is by arrival of the
        push that is kept.
        """
        kept: dict[object, SimRecord] = {}
        for index, record in enumerate(self._by_token.get(token, [])):
            if record.accepted:
                key: object = record.collapse_id if record.collapse_id is not None else index
                kept.pop(key, None)
                kept[key] = record
        return list(kept.values())

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self._all),
            "accepted": self._accepted,
            "validate_only": self._validate_only,
            "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
            "by_reason": dict(sorted(self._by_reason.items())),
        }
