"""Per-profile state inside a cohort: each profile has its own position and visits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ProfileState:
    node: str | None  # None once the profile has left the journey
    visits: dict[str, int] = field(default_factory=dict)

    def enter(self, node_id: str | None) -> None:
        self.node = node_id

    def visit_of(self, node_id: str) -> int:
        return self.visits.get(node_id, 0)

    def count_visit(self, node_id: str) -> None:
        self.visits[node_id] = self.visits.get(node_id, 0) + 1


@dataclass
class CohortState:
    profiles: dict[str, ProfileState]
    counts: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None

    def ready_by_node(self) -> dict[str, list[str]]:
        """Profiles standing on a node, grouped so each node advances them in one step."""
        groups: dict[str, list[str]] = {}
        for profile_id, profile in self.profiles.items():
            if profile.node is not None:
                groups.setdefault(profile.node, []).append(profile_id)
        return groups
