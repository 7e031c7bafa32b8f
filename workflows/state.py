"""Per-profile state inside a cohort: each profile has its own position, timers and facts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ProfileState:
    node: str | None  # None once the profile has left the journey
    visits: dict[str, int] = field(default_factory=dict)
    # set while the profile waits on its current node (a delay, a wait_until, a wait_for)
    wake_at: datetime | None = None
    # interactions received, by push node id: the kinds seen (opened, clicked, ...)
    interactions: dict[str, list[str]] = field(default_factory=dict)

    def enter(self, node_id: str | None) -> None:
        self.node = node_id
        self.wake_at = None

    def visit_of(self, node_id: str) -> int:
        return self.visits.get(node_id, 0)

    def count_visit(self, node_id: str) -> None:
        self.visits[node_id] = self.visits.get(node_id, 0) + 1

    def ready(self, now: datetime) -> bool:
        return self.node is not None and (self.wake_at is None or self.wake_at <= now)


@dataclass
class CohortState:
    profiles: dict[str, ProfileState]
    counts: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None
    # event ids already applied: signals may arrive more than once (decision 6)
    seen_events: set[str] = field(default_factory=set)

    def ready_by_node(self, now: datetime) -> dict[str, list[str]]:
        """Profiles ready on a node, grouped so each node advances them in one step."""
        groups: dict[str, list[str]] = {}
        for profile_id, profile in self.profiles.items():
            if profile.ready(now):
                assert profile.node is not None
                groups.setdefault(profile.node, []).append(profile_id)
        return groups

    def next_wake(self) -> datetime | None:
        times = [p.wake_at for p in self.profiles.values() if p.node and p.wake_at]
        return min(times) if times else None

    def active(self) -> bool:
        return any(p.node is not None for p in self.profiles.values())
