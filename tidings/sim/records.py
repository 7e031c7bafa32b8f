"""What the simulators processed: one compact record per request, indexed for the tests.

Records stay in memory (a benchmark run holds millions), so a record is a slotted frozen
dataclass and the indexes hold references, not copies. Counters for ``stats()`` are kept as
records arrive rather than recomputed. A record is added when the request's fate is known:
when its answer is written (processed), or when a fault means it never will be.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

Provider = Literal["apns", "fcm"]


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One request a simulator processed, or received and never answered.

    ``status`` is the HTTP status of the answer written, or 0 when none was: ``reason`` then
    says why (``reset``, ``hang``, ``refused``, ``goaway-refused``, ``dropped``,
    ``cancelled``; see :mod:`tidings.sim.wire`). An accepted push whose answer was lost
    (the scenario's ``answer_lost``) keeps status 200 with reason ``answer_lost``.

    ``collapse_id`` is the provider's collapse field as sent (APNs ``apns-collapse-id``, FCM
    ``android.collapse_key``); ``display_key`` is what the device replaces a shown
    notification by (None: never replaced, every copy shows), see :meth:`RecordStore.displayed`.
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
    display_key: str | None = None

    @property
    def accepted(self) -> bool:
        """Accepted for delivery: a 200 that was not a validate-only request."""
        return self.status == 200 and not self.validate_only

    def unanswered(self, reason: str) -> SimRecord:
        """This request as never processed: no answer was written, for ``reason``."""
        # An FCM message name exists only in an answer; an APNs apns-id is the request's own.
        message_id = self.message_id if self.provider == "apns" else None
        return dataclasses.replace(self, status=0, reason=reason, message_id=message_id)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimRecord:
        values: dict[str, Any] = {f.name: data.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class TokenSummary:
    """What one device received: requests, accepted pushes, distinct tracking ids among the
    accepted ones, and notifications the device shows (``len(displayed(token))``)."""

    requests: int
    accepted: int
    tracking_ids: int
    displayed: int

    @property
    def duplicates(self) -> int:
        """Accepted pushes beyond one per tracking id."""
        return self.accepted - self.tracking_ids


@dataclass(frozen=True, slots=True)
class SimSummary:
    """A simulator's stats and its per-token summary, as the control API serves them."""

    tokens: dict[str, TokenSummary]
    stats: dict[str, Any]


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
        """What the device shows: accepted pushes, the newest one per display key.

        A push without a display key (no collapse id or tag, or a data-only message the app
        handles itself) is never replaced. Order is by processing of the push that is kept.
        """
        kept: dict[object, SimRecord] = {}
        for index, record in enumerate(self._by_token.get(token, [])):
            if record.accepted:
                key: object = record.display_key if record.display_key is not None else index
                kept.pop(key, None)
                kept[key] = record
        return list(kept.values())

    def summary(self) -> dict[str, TokenSummary]:
        """Per token: what :class:`TokenSummary` counts. One pass over the records."""
        result: dict[str, TokenSummary] = {}
        for token, records in self._by_token.items():
            accepted = loose = 0
            tracking: set[str] = set()
            keys: set[str] = set()
            for record in records:
                if record.status != 200 or record.validate_only:
                    continue
                accepted += 1
                if record.tracking_id is not None:
                    tracking.add(record.tracking_id)
                if record.display_key is None:
                    loose += 1
                else:
                    keys.add(record.display_key)
            result[token] = TokenSummary(len(records), accepted, len(tracking), loose + len(keys))
        return result

    def stats(self) -> dict[str, Any]:
        return {
            "requests": len(self._all),
            "accepted": self._accepted,
            "validate_only": self._validate_only,
            "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
            "by_reason": dict(sorted(self._by_reason.items())),
        }
