"""Fault injection: what a simulator answers instead of (or on top of) normal behaviour.

A :class:`Scenario` is plain data (YAML/JSON, the control API, or Python). The simulator keeps
a :class:`ScenarioState` beside it for what changes while it runs: the scripted answers not yet
consumed and the per-token request counts. The percentage mix draws from a hash of
(seed, token, n-th request for that token), so a run repeats answer for answer even when
requests interleave differently on the wire.

Whatever the answer, a request is *processed* (its record committed; ``accepted`` when 200)
only when its answer is written to the connection. A fault that keeps the answer from being
written leaves the request unprocessed: recorded with status 0 and the reason (see
:data:`Action` for each fault, :mod:`tidings.sim.wire` for the reasons).
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

Action = Literal["goaway", "reset", "hang", "refuse", "answer_lost"]
"""A connection fault played instead of (or, for ``answer_lost``, after) the answer, once the
answer's latency has run:

``goaway``
    A graceful HTTP/2 GOAWAY, error code NO_ERROR; on APNs with the debug data
    ``{"reason": <reason>}`` as Apple sends it (``Answer.reason``, default ``Shutdown``).
    Its last-stream-id is the highest stream the server still processes: the streams below
    the triggering one that were already received are answered normally, each after its own
    latency, and then the connection closes. The triggering stream and every stream with a
    higher id are never processed (recorded ``goaway-refused``): the client learns from the
    last-stream-id that it may resend them. A stream the client opens after the GOAWAY is
    ignored (no record). If a stream above the trigger was answered already, the
    last-stream-id must cover it, so the trigger is refused with RST_STREAM REFUSED_STREAM
    too. HTTP/1.1 has no GOAWAY: the connection is closed without answering.
``reset``
    A TCP abort. Every stream in flight on that connection (received, not answered yet) is
    dropped and never processed (recorded ``reset``).
``hang``
    That one stream is never answered and never processed (recorded ``hang``); the connection
    keeps serving the others. On HTTP/1.1 the connection, which answers in order, is stuck.
``refuse``
    RST_STREAM with REFUSED_STREAM on that stream: RFC 9113 guarantees a refused stream was not
    processed (recorded ``refused``). HTTP/1.1 has no such frame: the connection is closed
    without answering.
``answer_lost``
    The request is processed as usual (a valid push is accepted, status 200, and reaches the
    device; the record's reason is ``answer_lost``), then the connection is aborted before the
    answer is written: the provider has the push, the client never hears back. Other streams
    in flight on the connection are dropped unprocessed (recorded ``dropped``). A client's
    resend of it must collapse on the device (collapse id, tag).
"""
Platform = Literal["android", "ios"]
Environment = Literal["production", "sandbox"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Answer(_Model):
    """One scripted answer. Unset fields fall back to the provider's usual values.

    APNs uses ``reason`` (status defaults from Apple's table); FCM uses ``error_code`` (status
    and ``status_name`` default from Google's table). ``raw_body`` replaces the JSON body
    verbatim (an HTML 502 page, an empty 500). ``action`` plays a connection fault instead of
    the response (``goaway``, ``reset``, ``hang``, ``refuse``) or after processing it
    (``answer_lost``); :data:`Action` says what each does to the request and its neighbours.
    ``latency_ms`` delays the answer (or the fault) of this request.
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
    platforms: dict[str, Platform] = Field(default_factory=dict)
    """FCM: token -> the device's platform, which decides what the device shows (``displayed``):
    Android replaces a notification by ``android.notification.tag``, iOS by the
    ``apns-collapse-id`` header. Unlisted tokens: ``ios`` when the message has an ``apns``
    section and no ``android`` one, else ``android``."""
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
