"""A journey's counts: one typed object, every key built in this module.

Counts travel as plain ``dict[str, int]`` (cohort snapshots, cohort results, run totals,
query answers, the run's stored summary), so histories recorded before this module replay
unchanged; in code they are a :class:`Counts`, whose methods name what is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

PUSH_PREFIX = "push."
INTERACTION_PREFIX = "interaction."


class Left(StrEnum):
    """How a profile left the journey."""

    COMPLETED = "completed"  # ran off the end of a branch
    EXITED = "exited"  # an exit node
    GOAL = "goal"  # its goal event arrived
    CANCELLED = "cancelled"  # stopped by the run's cancel


class Counts(Counter[str]):
    """Counts of a cohort or a run: profiles, where they left, pushes by ledger status,
    interactions by kind, and each branching node's outcomes."""

    PROFILES = "profiles"
    COHORTS = "cohorts"
    POSTPONED = "postponed"  # sends held for quiet hours
    TARGETED_PROFILES = "targeted_profiles"
    PROFILES_WITH_DEVICE = "profiles_with_device"
    DEVICES_TARGETED = "devices_targeted"
    INVALIDATED = "invalidated"
    QUARANTINED = "quarantined"
    # a triggered run's live summary, from the store: pushes handed to a provider
    PUSHES_SENT = "pushes_sent"

    @classmethod
    def of(cls, values: Mapping[str, int] | None) -> Counts:
        return cls(values or {})

    def plain(self) -> dict[str, int]:
        """As the wire and the store carry counts."""
        return dict(self)

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def push_key(status: str) -> str:
        """Ledger rows of a push step by final status (``delivered``, ``failed`` ...)."""
        return f"{PUSH_PREFIX}{status}"

    @staticmethod
    def interaction_key(kind: str) -> str:
        return f"{INTERACTION_PREFIX}{kind}"

    @staticmethod
    def wait_key(node_id: str, outcome: Literal["matched", "timed_out"]) -> str:
        return f"{node_id}.{outcome}"

    @staticmethod
    def branch_key(node_id: str, index: int) -> str:
        return f"{node_id}.branch{index}"

    @staticmethod
    def promoted_key(node_id: str) -> str:
        """Profiles an experiment split sent down its promoted winner (not drawn)."""
        return f"{node_id}.promoted"

    @staticmethod
    def condition_key(node_id: str, taken: bool) -> str:
        return f"{node_id}.{'then' if taken else 'otherwise'}"

    # -- counting ----------------------------------------------------------------------

    def left(self, how: Left | str, number: int = 1) -> None:
        self[str(how)] += number

    def pushes(self, statuses: Mapping[str, int]) -> None:
        for status, number in statuses.items():
            self[self.push_key(status)] += number

    def interaction(self, kind: str) -> None:
        self[self.interaction_key(kind)] += 1

    # -- reading -----------------------------------------------------------------------

    def push(self, status: str) -> int:
        return self.get(self.push_key(status), 0)

    def profiles_left(self, how: Left) -> int:
        return self.get(str(how), 0)

    @property
    def pushes_sent(self) -> int:
        """Pushes handed to a provider: every push status but ``not_sent`` and ``expired``
        (a triggered run's summary says it directly)."""
        if self.PUSHES_SENT in self:
            return self[self.PUSHES_SENT]
        held = (self.push_key("not_sent"), self.push_key("expired"))
        return sum(n for key, n in self.items() if key.startswith(PUSH_PREFIX) and key not in held)
