"""Judging one trial: the simulators' records (what the providers accepted) against the
store's ledger and devices, and against the promise: every valid device gets exactly one push
per push node, whatever fails.

The simulators are the ground truth for what reached a device. Their records name the token
and the push's tracking id; the ledger maps a tracking id to its (device, push node), so an
accepted request is attributed to the send it belongs to whatever the ledger says of it.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DELIVERED = "delivered"
# "sent, answer lost": the provider may or may not have taken the push; never a disagreement
UNKNOWN = "unknown"
PENDING = "pending"
DEVICE_VALID = "valid"
# A connection fault also cuts off the answers to requests that arrived just after it, in the
# same read of the connection (the simulator takes them, the client never hears of them).
SAME_READ_S = 0.05
DEVICE_INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Accepted:
    """One request a simulator accepted for delivery."""

    provider: str
    token: str
    tracking_id: str | None
    # what the device would show it as: two accepted pushes with the same key show once
    display_key: str | None
    received_at: float

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Accepted:
        """From a simulator record as the control API returns it: ``display_key`` when the
        simulator records one, else the collapse id (what APNs and FCM collapse on)."""
        key = record.get("display_key")
        if key is None:
            key = record.get("collapse_id")
        return cls(
            provider=str(record["provider"]),
            token=str(record["token"]),
            tracking_id=record.get("tracking_id"),
            display_key=None if key is None else str(key),
            received_at=float(record["received_at"]),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    tracking_id: str
    node_id: str
    device_id: int | None
    status: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    id: int
    token: str
    state: str


@dataclass
class Findings:
    """What a trial did, counted; see bench/README.md for what each figure means."""

    expected: int = 0  # (valid device, push node) pairs that must get exactly one push
    lost: int = 0  # of those, pairs no provider accepted a push for
    extra: int = 0  # accepted requests beyond one per pair (unattributed ones included)
    extra_max_per_device: int = 0  # the most extra copies any one pair got
    # extra copies by the disruption (kill, restart, a worker's death) they are charged to
    extra_by_disruption: list[int] = field(default_factory=list)
    # extra copies whose previous copy's answer a connection fault of its provider cut off
    extra_after_connection_faults: int = 0
    # extra copies neither explains (unattributed requests included): each one is a fault
    extra_unexplained: int = 0
    unattributed: int = 0  # accepted requests whose tracking id is no ledger row's (or token)
    shown_twice: int = 0  # pairs accepted under two display keys: the device shows two
    delivered_not_accepted: int = 0  # ledger says delivered, no provider accepted it
    accepted_not_delivered: int = 0  # a provider accepted it, ledger says neither
    unknown: int = 0  # ledger rows "unknown" (sent, answer lost)
    unknown_accepted: int = 0  # ... of which a provider did accept the push
    pending: int = 0  # ledger rows still pending when the trial was judged
    statuses: dict[str, int] = field(default_factory=dict)
    max_attempts: int = 0
    unregistered: int = 0  # tokens the simulators answer as unregistered
    unregistered_not_invalidated: int = 0
    valid_invalidated: int = 0  # valid tokens the store no longer treats as valid

    @property
    def disagreements(self) -> int:
        return self.delivered_not_accepted + self.accepted_not_delivered

    @property
    def extra_max_per_disruption(self) -> int:
        return max(self.extra_by_disruption, default=0)

    @property
    def extra_after_disruptions(self) -> int:
        return sum(self.extra_by_disruption)


def judge(
    push_nodes: Sequence[str],
    devices: Iterable[DeviceEntry],
    unregistered: set[str],
    ledger: Iterable[LedgerEntry],
    accepted: Iterable[Accepted],
    disruptions: Sequence[float],
    connection_faults: Mapping[str, Sequence[float]] | None = None,
    answer_window_s: float = 15.0,
) -> Findings:
    """Count what the trial did.

    ``disruptions`` are the wall-clock times of the kills and restarts (the simulators' clock:
    the same machine's). ``connection_faults`` are, by provider, the times the simulators
    broke a connection on purpose (GOAWAY, reset, ...): the answers to the other requests in
    flight on it may be lost although the provider took them. An extra copy is charged to
    the first disruption between it and the copy before it (the disruption whose in-flight
    sends that copy was among); else it is explained by a
    connection fault of its provider within ``answer_window_s`` (the request timeout) after
    the copy before it (or in the same read, just before it); else it is charged to the
    latest disruption before it (a restart's effects can come later: a batch Temporal
    dispatches again once it is back); any other extra copy is unexplained.
    """
    findings = Findings()
    device_list = list(devices)
    token_of = {d.id: d.token for d in device_list}
    by_tracking = {entry.tracking_id: entry for entry in ledger}
    times = sorted(disruptions)
    faults = {p: sorted(t) for p, t in (connection_faults or {}).items()}

    findings.unregistered = sum(1 for d in device_list if d.token in unregistered)
    for device in device_list:
        if device.token in unregistered:
            findings.unregistered_not_invalidated += device.state != DEVICE_INVALID
        else:
            findings.valid_invalidated += device.state != DEVICE_VALID

    per_pair: defaultdict[tuple[int, str], list[Accepted]] = defaultdict(list)
    accepted_ids: set[str] = set()
    for record in accepted:
        entry = by_tracking.get(record.tracking_id or "")
        if (
            entry is None
            or entry.device_id is None
            or token_of.get(entry.device_id) != record.token
        ):
            findings.unattributed += 1
            continue
        accepted_ids.add(entry.tracking_id)
        per_pair[(entry.device_id, entry.node_id)].append(record)

    for device in device_list:
        if device.token in unregistered:
            continue
        for node in push_nodes:
            findings.expected += 1
            findings.lost += not per_pair.get((device.id, node))

    by_disruption = [0] * len(times)
    findings.extra = findings.extra_unexplained = findings.unattributed
    for records in per_pair.values():
        copies = len(records) - 1
        findings.extra += copies
        findings.extra_max_per_device = max(findings.extra_max_per_device, copies)
        ordered = sorted(records, key=lambda r: r.received_at)
        for before, copy in itertools.pairwise(ordered):
            # the first disruption after the copy before: the one whose in-flight sends it
            # was among (kills in quick succession each keep their own count)
            first_after = bisect.bisect_left(times, before.received_at)
            index = bisect.bisect_left(times, copy.received_at) - 1
            if first_after <= index:
                by_disruption[first_after] += 1
            elif _fault_within(
                faults.get(before.provider, []), before.received_at, answer_window_s
            ):
                findings.extra_after_connection_faults += 1
            elif index >= 0:
                by_disruption[index] += 1
            else:
                findings.extra_unexplained += 1
        keys = {r.display_key if r.display_key is not None else id(r) for r in records}
        findings.shown_twice += len(keys) > 1
    findings.extra_by_disruption = by_disruption

    statuses: Counter[str] = Counter()
    for entry in by_tracking.values():
        statuses[entry.status] += 1
        findings.max_attempts = max(findings.max_attempts, entry.attempts)
        taken = entry.tracking_id in accepted_ids
        if entry.status == UNKNOWN:
            findings.unknown += 1
            findings.unknown_accepted += taken
        elif entry.status == DELIVERED:
            findings.delivered_not_accepted += not taken
        elif taken:
            findings.accepted_not_delivered += 1
    findings.pending = statuses.get(PENDING, 0)
    findings.statuses = dict(sorted(statuses.items()))
    return findings


def _fault_within(times: Sequence[float], start: float, window: float) -> bool:
    index = bisect.bisect_left(times, start - SAME_READ_S)
    return index < len(times) and times[index] <= start + window


@dataclass(frozen=True)
class Targets:
    """What a trial must show to pass."""

    # extra copies one disruption (a kill, a restart) may cause on average: the sends a worker
    # has in flight or not yet recorded, send_concurrency per provider
    in_flight_bound: int
    # extra copies connection faults may cause, as a share of the pushes expected
    connection_extra_share: float = 0.02


def failures(findings: Findings, completed: bool, targets: Targets) -> list[str]:
    """The checks a trial failed, each named with its figure; empty when it passed."""
    failed: list[str] = []
    if not completed:
        failed.append("run did not complete")
    if findings.lost:
        failed.append(f"lost={findings.lost}")
    if findings.disagreements:
        failed.append(
            f"ledger disagrees: delivered_not_accepted={findings.delivered_not_accepted}, "
            f"accepted_not_delivered={findings.accepted_not_delivered}"
        )
    if findings.unregistered_not_invalidated:
        failed.append(f"unregistered_not_invalidated={findings.unregistered_not_invalidated}")
    if findings.valid_invalidated:
        failed.append(f"valid_invalidated={findings.valid_invalidated}")
    if findings.shown_twice:
        failed.append(f"shown_twice={findings.shown_twice}")
    if findings.extra_unexplained:
        failed.append(
            f"extra copies neither a disruption nor a connection fault explains="
            f"{findings.extra_unexplained}"
        )
    allowed = int(targets.connection_extra_share * findings.expected)
    if findings.extra_after_connection_faults > allowed:
        failed.append(
            f"extra copies after connection faults={findings.extra_after_connection_faults} "
            f"(at most {targets.connection_extra_share:.0%} of {findings.expected} pushes: "
            f"{allowed})"
        )
    disruptions = len(findings.extra_by_disruption)
    if findings.extra_after_disruptions > disruptions * targets.in_flight_bound:
        failed.append(
            f"extra copies after {disruptions} disruptions={findings.extra_after_disruptions} "
            f"(bound {targets.in_flight_bound} each; the most after one: "
            f"{findings.extra_max_per_disruption})"
        )
    return failed
