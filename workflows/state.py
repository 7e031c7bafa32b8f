"""Per-profile state inside a cohort: each profile has its own position, timers and facts.

The state travels across continue-as-new as a :class:`CohortSnapshot` (plain dicts and
lists, so the data converter needs no special types).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from workflows.counts import Counts, Left


@dataclass
class ProfileState:
    node: str | None  # None once the profile has left the journey
    visits: dict[str, int] = field(default_factory=dict)
    # set while the profile waits on its current node (a delay, a wait_until, a wait_for, a
    # send held for quiet hours)
    wake_at: datetime | None = None
    # interactions with the latest send of each push node: the kinds seen (opened, clicked)
    interactions: dict[str, list[str]] = field(default_factory=dict)
    # the current node has started its wait (its timer is set)
    armed: bool = False
    # the cohort's event sequence number when the profile reached its current node
    entered_seq: int = 0
    # custom events received, by name: the sequence number of the latest one
    events: dict[str, int] = field(default_factory=dict)
    # per push node, at its latest send: valid devices targeted and devices delivered to
    targeted: dict[str, int] = field(default_factory=dict)
    delivered: dict[str, int] = field(default_factory=dict)
    # the goal event arrived: the profile leaves as soon as no step of it is in flight
    goal_reached: bool = False
    # an event arrived since its wait_for node last looked
    nudged: bool = False
    # when the profile reached its current node, as a push node first saw it: a push's TTL
    # runs from here, so a send held for quiet hours cannot go out past its expiry
    arrived_at: datetime | None = None
    # per push node, the visit of its latest send: an interaction that names an earlier
    # visit (a late open of an earlier send of the node) is not this send's
    sent_visits: dict[str, int] = field(default_factory=dict)

    def visit_of(self, node_id: str) -> int:
        return self.visits.get(node_id, 0)

    def count_visit(self, node_id: str) -> None:
        self.visits[node_id] = self.visits.get(node_id, 0) + 1

    def is_latest_send(self, node_id: str, visit: int) -> bool:
        """Whether ``visit`` is the visit of the profile's latest send of the push node (the
        one in flight, if any)."""
        # a send started before sent_visits was kept: its visit was counted when it ended
        latest = self.sent_visits.get(node_id, self.visit_of(node_id) - 1)
        return visit == latest

    def ready(self, now: datetime, wakes_on_events: bool) -> bool:
        if self.node is None:
            return False
        if self.wake_at is None or self.wake_at <= now:
            return True
        return wakes_on_events and self.nudged


@dataclass
class CohortState:
    profiles: dict[str, ProfileState]
    counts: Counts = field(default_factory=Counts)
    stopped: str | None = None
    # event ids already applied: signals may arrive more than once (decision 6)
    seen_events: set[str] = field(default_factory=set)
    # numbers the custom events a cohort receives, so a wait_for can tell "since I arrived"
    event_seq: int = 0
    cancelled: bool = False
    # experiment splits promoted to a winner: node id -> the branch every profile now takes
    promotions: dict[str, int] = field(default_factory=dict)

    def move(self, profile_id: str, node_id: str | None, *, leaving: Left = Left.COMPLETED) -> None:
        """Put a profile on a node. None: it leaves the journey, counted under ``leaving``
        (completed: it ran off the end of a branch; exited; goal)."""
        profile = self.profiles[profile_id]
        profile.node = node_id
        profile.wake_at = None
        profile.armed = False
        profile.nudged = False
        profile.arrived_at = None
        profile.entered_seq = self.event_seq
        if node_id is None:
            self.counts.left(leaving)

    def ready_by_node(
        self, now: datetime, busy: Collection[str], event_nodes: Collection[str]
    ) -> dict[str, list[str]]:
        """Profiles ready on a node, grouped so each node advances them in one step."""
        groups: dict[str, list[str]] = {}
        for profile_id, profile in self.profiles.items():
            if profile_id in busy or profile.node is None:
                continue
            if profile.ready(now, profile.node in event_nodes):
                groups.setdefault(profile.node, []).append(profile_id)
        return groups

    def next_wake(self, busy: Collection[str]) -> datetime | None:
        times = [
            p.wake_at
            for pid, p in self.profiles.items()
            if p.node and p.wake_at and pid not in busy
        ]
        return min(times) if times else None

    def active(self) -> bool:
        return any(p.node is not None for p in self.profiles.values())

    def positions(self) -> dict[str, int]:
        """How many profiles stand on each node."""
        at: Counter[str] = Counter()
        for profile in self.profiles.values():
            if profile.node is not None:
                at[profile.node] += 1
        return dict(at)

    def snapshot(self) -> CohortSnapshot:
        return CohortSnapshot(
            profiles=self.profiles,
            counts=self.counts.plain(),
            stopped=self.stopped,
            seen_events=sorted(self.seen_events),
            event_seq=self.event_seq,
            cancelled=self.cancelled,
            promotions=dict(self.promotions),
        )

    @classmethod
    def restore(cls, snapshot: CohortSnapshot) -> CohortState:
        return cls(
            profiles=snapshot.profiles,
            counts=Counts.of(snapshot.counts),
            stopped=snapshot.stopped,
            seen_events=set(snapshot.seen_events),
            event_seq=snapshot.event_seq,
            cancelled=snapshot.cancelled,
            promotions=dict(snapshot.promotions),
        )


@dataclass
class CohortSnapshot:
    """A cohort's state as continue-as-new carries it: positions, timers, facts, counts,
    and the ids of the events already applied (so no signal is applied twice across it)."""

    profiles: dict[str, ProfileState]
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    seen_events: list[str] = field(default_factory=list)
    event_seq: int = 0
    cancelled: bool = False
    promotions: dict[str, int] = field(default_factory=dict)
