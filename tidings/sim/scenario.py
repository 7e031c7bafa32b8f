"""Fault injection: what a simulator answers instead of (or on top of) normal behaviour.

A :class:`Scenario` is plain data (YAML/JSON, the control API, or Python). The simulator keeps
a :class:`ScenarioState` beside it for what changes while it runs: the scripted answers not yet
consumed and the per-token request counts. The percentage mix draws from a hash of
(seed, token, n-th request for that token), so a run repeats answer for answer even when
requests interleave differently on the wire.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import deque
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Action = Literal["goaway", "reset", "hang"]
Environment = Literal["production", "sandbox"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Answer(_Model):
    """One scripted answer. Unset fields fall back to the provider's usual values.

    APNs uses ``reason`` (status defaults from Apple's table); FCM uses ``error_code`` (status
    and ``status_name`` default from Google's table). ``raw_body`` replaces the JSON body
    verbatim (an HTML 502 page, an empty 500). ``action`` answers with a connection fault
    instead of a response: ``goaway`` (HTTP/2 GOAWAY, then close), ``reset`` (TCP abort) or
    ``hang`` (that stream is never answered).
    """

    status: int | None = None
    reason: str | None = None
    error_code: str | None = None
    status_name: str | None = None
    message: str | None = None
    retry_after_s: int | None = Field(default=None, ge=0)
    timestamp_ms: int | None = None
    raw_body: str | None = None
    content_type: str | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    action: Action | None = None


class MixEntry(_Model):
    percent: float = Field(gt=0, le=100)
    answer: Answer


class FixedLatency(_Model):
    kind: Literal["fixed"] = "fixed"
    ms: float = Field(ge=0)


class UniformLatency(_Model):
    kind: Literal["uniform"] = "uniform"
    min_ms: float = Field(ge=0)
    max_ms: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.max_ms < self.min_ms:
            raise ValueError("max_ms must be >= min_ms")
        return self


class LognormalLatency(_Model):
    kind: Literal["lognormal"] = "lognormal"
    median_ms: float = Field(gt=0)
    sigma: float = Field(ge=0)


Latency = Annotated[FixedLatency | UniformLatency | LognormalLatency, Field(discriminator="kind")]


class Scenario(_Model):
    """How one simulator misbehaves. The default scenario is a healthy provider."""

    seed: int = 0
    scripted: dict[str, list[Answer]] = Field(default_factory=dict)
    """Token -> answers consumed one per request, in order; then normal behaviour."""
    mix: list[MixEntry] = Field(default_factory=list)
    """Answers drawn by percentage for requests no script covers; the rest behave normally."""
    latency: Latency | None = None
    unregistered: dict[str, int | None] = Field(default_factory=dict)
    """Token -> ms timestamp it was unregistered (null: when the scenario is set)."""
    environments: dict[str, Environment] = Field(default_factory=dict)
    """APNs: token -> the environment that issued it; sent to the other one: BadDeviceToken."""
    token_topics: dict[str, str] = Field(default_factory=dict)
    """APNs: token -> bundle id it belongs to; another allowed topic: DeviceTokenNotForTopic."""
    token_projects: dict[str, str] = Field(default_factory=dict)
    """FCM: token -> project it belongs to; sent from another project: SENDER_ID_MISMATCH."""
    max_concurrent_streams: int = Field(default=1000, ge=1)
    token_update_min_interval_s: float = Field(default=1200, ge=0)
    access_token_ttl_s: float = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _mix_fits(self) -> Scenario:
        if sum(e.percent for e in self.mix) > 100 + 1e-9:
            raise ValueError("mix percentages add up to more than 100")
        return self

    @classmethod
    def from_text(cls, text: str) -> Scenario:
        """Parse YAML (a superset of JSON)."""
        return cls.model_validate(yaml.safe_load(text) or {})

    @classmethod
    def from_file(cls, path: Path) -> Scenario:
        return cls.from_text(path.read_text())


# A provider having a bad day, for demos: ``--scenario`` with this path.
FLAKY_SCENARIO_FILE = Path(__file__).with_name("flaky.json")


def load_scenario_file(path: Path) -> dict[str, Scenario]:
    """Read a scenario file: one scenario for both simulators, or ``{apns: ..., fcm: ...}``."""
    data: Any = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a scenario file holds a mapping")
    if data and set(data) <= {"apns", "fcm"}:
        return {name: Scenario.model_validate(data.get(name) or {}) for name in ("apns", "fcm")}
    shared = Scenario.model_validate(data)
    return {"apns": shared, "fcm": shared.model_copy(deep=True)}


def dump_scenario(scenario: Scenario) -> str:
    return json.dumps(scenario.model_dump(mode="json", exclude_defaults=True))


class ScenarioState:
    """A scenario plus what it has consumed so far."""

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        self._scripted = {t: deque(a) for t, a in self.scenario.scripted.items() if a}
        self._seen: dict[str, int] = {}
        self._rng = random.Random(self.scenario.seed)
        self._cumulative: list[tuple[float, Answer]] = []
        total = 0.0
        for entry in self.scenario.mix:
            total += entry.percent / 100
            self._cumulative.append((total, entry.answer))
        self._latency = self.scenario.latency

    def next_answer(self, token: str) -> Answer | None:
        """The scripted or drawn answer for this request, or None for normal behaviour."""
        queue = self._scripted.get(token)
        if queue:
            answer = queue.popleft()
            if not queue:
                del self._scripted[token]
            return answer
        if not self._cumulative:
            return None
        n = self._seen.get(token, 0)
        self._seen[token] = n + 1
        digest = hashlib.blake2b(
            f"{self.scenario.seed}|{token}|{n}".encode(), digest_size=8
        ).digest()
        draw = int.from_bytes(digest, "big") / 2**64
        for bound, answer in self._cumulative:
            if draw < bound:
                return answer
        return None

    def latency_s(self, answer: Answer | None) -> float:
        """Seconds to wait before answering: the answer's own latency, else the distribution."""
        if answer is not None and answer.latency_ms is not None:
            return answer.latency_ms / 1000
        latency = self._latency
        if latency is None:
            return 0.0
        if isinstance(latency, FixedLatency):
            ms = latency.ms
        elif isinstance(latency, UniformLatency):
            ms = self._rng.uniform(latency.min_ms, latency.max_ms)
        else:
            ms = self._rng.lognormvariate(math.log(latency.median_ms), latency.sigma)
        return ms / 1000
