"""The faults: what each scenario breaks, when, and for how long.

A scenario prepares the simulators before the run starts (``before_run``) and injects its
faults while the run goes on (``inject``); the trial restores a healthy world afterwards
whatever happened. Each scenario works through a :class:`FaultContext`, which holds the
processes and knows when the run has ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio.client import Client
from temporalio.service import RPCError

from .processes import PrivatePostgres, Temporal, Workers

LIST_AUDIENCE = "tidings.audience.page"  # the run workflow's paging activity


@dataclass(frozen=True)
class Size:
    """How big and how long: the full suite, or the reduced one CI runs (``--quick``)."""

    profiles: int
    kills: int  # worker SIGKILLs per kill scenario
    kill_spread_s: float  # a kill comes this long at most after the worker starts sending
    storm_s: float
    outage_s: float
    down_s: float  # how long Temporal / PostgreSQL stay down when restarted
    cohort_size: int
    audience_page_size: int
    settle_s: float  # how long past its faults a run may take to complete
    heartbeat_timeout_s: float  # how soon Temporal notices a killed worker's batch
    max_backoff_s: float
    # provider requests in flight per worker: also the extra copies one disruption may cause
    send_concurrency: int

    def but(self, **changes: Any) -> Size:
        return dataclasses.replace(self, **changes)


FULL = Size(
    profiles=3000,
    kills=10,
    kill_spread_s=2.0,
    storm_s=210,
    outage_s=120,
    down_s=10,
    cohort_size=500,
    audience_page_size=2000,
    settle_s=300,
    heartbeat_timeout_s=10,
    max_backoff_s=20,
    send_concurrency=256,  # the setting's default
)
QUICK = Size(
    profiles=300,
    kills=3,
    kill_spread_s=0.5,
    # long enough that a delivery giving up on a provider's trouble too soon loses pushes
    storm_s=45,
    outage_s=60,
    down_s=3,
    cohort_size=50,
    audience_page_size=200,
    settle_s=180,
    heartbeat_timeout_s=10,
    max_backoff_s=10,
    # well below a small audience, so the bound on extra copies per kill still means something
    send_concurrency=32,
)


class SimControl(Protocol):
    async def set_scenario(self, provider: Any, scenario: dict[str, Any]) -> None: ...

    async def total_requests(self) -> int: ...


@dataclass
class FaultContext:
    """What a scenario works with during one trial."""

    size: Size
    rng: random.Random
    client: Client
    sims: SimControl
    workers: Workers
    temporal: Temporal
    postgres: PrivatePostgres | None
    # provider-fault actions the simulators accept ("goaway", "reset", "hang", and maybe
    # "refuse", "answer_lost")
    actions: frozenset[str]
    run_id: str = ""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    disruptions: list[float] = field(default_factory=list)  # wall-clock times of kills/restarts
    notes: dict[str, Any] = field(default_factory=dict)

    def disrupted(self) -> None:
        self.disruptions.append(time.time())

    async def pause(self, seconds: float) -> bool:
        """Sleep, or less if the run ends; True if the run is still going."""
        try:
            await asyncio.wait_for(self.finished.wait(), timeout=max(0.0, seconds))
        except TimeoutError:
            return True
        return False

    async def until_sending(self, timeout_s: float = 120) -> bool:
        """Wait until the simulators see new requests (the current worker is sending)."""
        start = await self.sims.total_requests()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not await self.pause(0.05):
                return False
            if await self.sims.total_requests() > start:
                return True
        return not self.finished.is_set()

    async def in_flight_moment(self) -> bool:
        """Wait for sends, then a random moment among them; False if the run ended first."""
        if not await self.until_sending():
            return False
        return await self.pause(self.rng.uniform(0, self.size.kill_spread_s))


async def _nothing(ctx: FaultContext) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    pushes: int = 1
    postgres_only: bool = False
    # restarts a server the store's trials share: runs while no other trial does
    exclusive: bool = False
    before_run: Callable[[FaultContext], Coroutine[Any, Any, None]] = _nothing
    inject: Callable[[FaultContext], Coroutine[Any, Any, None]] = _nothing
    # seconds of faults, for the run's deadline (and to start the longest trials first)
    fault_span: Callable[[Size], float] = lambda size: 0.0
    settings: Callable[[Size], dict[str, Any]] = lambda size: {}


# -- worker kills ------------------------------------------------------------------------------


async def _kill_workers(ctx: FaultContext) -> None:
    kills = 0
    for _ in range(ctx.size.kills):
        if not await ctx.in_flight_moment():
            break
        await asyncio.to_thread(ctx.workers.kill)
        ctx.disrupted()
        kills += 1
    ctx.notes["kills"] = kills


def _kill_span(size: Size) -> float:
    # each kill: a heartbeat timeout before the batch moves on, plus a new worker's start
    return size.kills * (size.heartbeat_timeout_s + size.kill_spread_s + 15)


async def _kill_while_paging(ctx: FaultContext) -> None:
    """Kill the worker as soon as the run's audience page shows as a pending activity, or
    once the run has moved past it (cohorts started) if the page was read too fast to be
    seen: describing the run in a tight loop, several requests at a time."""
    handle = ctx.client.get_workflow_handle(ctx.run_id)
    started = time.monotonic()
    seen: list[bool] = []

    async def watch() -> None:
        while not seen and time.monotonic() - started < 60 and not ctx.finished.is_set():
            try:
                raw = (await handle.describe()).raw_description
            except RPCError:
                await asyncio.sleep(0.01)
                continue
            if any(a.activity_type.name == LIST_AUDIENCE for a in raw.pending_activities):
                seen.append(True)
            elif raw.pending_children:
                seen.append(False)

    await asyncio.gather(*(watch() for _ in range(3)))
    await asyncio.to_thread(ctx.workers.kill)
    ctx.disrupted()
    ctx.notes["caught_paging"] = bool(seen and seen[0])
    ctx.notes["kill_after_s"] = round(time.monotonic() - started, 3)


# -- Temporal and PostgreSQL restarts ---------------------------------------------------------


async def _restart_temporal(ctx: FaultContext) -> None:
    if not await ctx.in_flight_moment():
        return
    await asyncio.to_thread(ctx.temporal.crash)
    ctx.disrupted()
    await asyncio.sleep(ctx.size.down_s)
    await asyncio.to_thread(ctx.temporal.start)


async def _restart_postgres(ctx: FaultContext) -> None:
    if ctx.postgres is None:
        raise RuntimeError("postgres-restart needs the PostgreSQL store")
    if not await ctx.in_flight_moment():
        return
    await asyncio.to_thread(ctx.postgres.crash)
    ctx.disrupted()
    await asyncio.sleep(ctx.size.down_s)
    await asyncio.to_thread(ctx.postgres.start)


# -- provider storms and outages --------------------------------------------------------------

APNS_HTTP = [
    ({"reason": "TooManyRequests"}, 7.0),
    ({"reason": "InternalServerError"}, 6.0),
    ({"reason": "ServiceUnavailable"}, 7.0),
]
FCM_HTTP = [
    ({"error_code": "QUOTA_EXCEEDED"}, 7.0),
    ({"error_code": "INTERNAL"}, 6.0),
    ({"error_code": "UNAVAILABLE"}, 7.0),
]


def _connection_mix(http: list[tuple[dict[str, Any], float]], actions: frozenset[str]) -> Any:
    """20 %: half HTTP errors, half connection faults: GOAWAY, resets, hung streams, and
    refused streams when the simulators know them (their share going to resets when not).
    ``answer_lost`` (a push accepted and its answer lost on purpose) is left out: it
    duplicates by construction, and the normal suite tests it on its own."""
    mix = [(answer, share / 2) for answer, share in http]
    faults = {"goaway": 3.0, "reset": 3.5, "hang": 2.0}
    for optional in ("refuse",):
        if optional in actions:
            faults[optional] = 1.5
        else:
            faults["reset"] += 1.5
    mix += [({"action": action}, share) for action, share in faults.items()]
    return mix


def _scenario(mix: list[tuple[dict[str, Any], float]], seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "mix": [{"percent": share, "answer": answer} for answer, share in mix],
    }


def _storm(connection_faults: bool) -> Callable[[FaultContext], Coroutine[Any, Any, None]]:
    async def before_run(ctx: FaultContext) -> None:
        apns, fcm = APNS_HTTP, FCM_HTTP
        if connection_faults:
            apns, fcm = _connection_mix(apns, ctx.actions), _connection_mix(fcm, ctx.actions)
            ctx.notes["actions"] = sorted({a["action"] for a, _ in apns if "action" in a})
        seed = ctx.rng.randrange(1 << 30)
        await ctx.sims.set_scenario("apns", _scenario(apns, seed))
        await ctx.sims.set_scenario("fcm", _scenario(fcm, seed))

    return before_run


async def _outage_before(ctx: FaultContext) -> None:
    await ctx.sims.set_scenario("apns", _scenario([({"reason": "ServiceUnavailable"}, 100)], 0))
    await ctx.sims.set_scenario("fcm", _scenario([({"error_code": "UNAVAILABLE"}, 100)], 0))


def _storm_span(size: Size) -> float:
    # FCM's QUOTA_EXCEEDED asks for a minute before the retry (Google's rule)
    return size.storm_s + 60


def _heal_after(
    seconds: Callable[[Size], float],
) -> Callable[[FaultContext], Coroutine[Any, Any, None]]:
    async def inject(ctx: FaultContext) -> None:
        await ctx.pause(seconds(ctx.size))
        for provider in ("apns", "fcm"):
            await ctx.sims.set_scenario(provider, {})

    return inject


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("baseline", "no fault: the control (every check must hold, no extra copy)"),
        Scenario(
            "kill-1push",
            "worker SIGKILLed at random moments of its sends, a new one started each time",
            inject=_kill_workers,
            fault_span=_kill_span,
        ),
        Scenario(
            "kill-2push",
            "the same during a two-push journey",
            pushes=2,
            inject=_kill_workers,
            fault_span=_kill_span,
        ),
        Scenario(
            "temporal-restart",
            "Temporal's dev server SIGKILLed mid-broadcast, restarted on its database and port",
            exclusive=True,
            inject=_restart_temporal,
            fault_span=lambda size: size.down_s + size.kill_spread_s + 30,
        ),
        Scenario(
            "postgres-restart",
            "the private PostgreSQL stopped at once mid-broadcast (SIGQUIT), then started",
            postgres_only=True,
            exclusive=True,
            inject=_restart_postgres,
            fault_span=lambda size: size.down_s + size.kill_spread_s + 30,
        ),
        Scenario(
            "storm-http",
            "20 % of requests answered 429/500/503 (both providers) for a while, then healthy",
            before_run=_storm(connection_faults=False),
            inject=_heal_after(lambda size: size.storm_s),
            fault_span=_storm_span,
        ),
        Scenario(
            "storm-conn",
            "20 % of requests: HTTP errors and connection faults (GOAWAY, reset, hung stream, "
            "and refused stream where the simulators have it)",
            before_run=_storm(connection_faults=True),
            inject=_heal_after(lambda size: size.storm_s),
            fault_span=_storm_span,
        ),
        Scenario(
            "outage",
            "every request answered 503 (both providers) for a while, then healthy",
            before_run=_outage_before,
            inject=_heal_after(lambda size: size.outage_s),
            fault_span=lambda size: size.outage_s,
        ),
        Scenario(
            "kill-paging",
            "worker SIGKILLed while the run pages its audience (one big page)",
            inject=_kill_while_paging,
            # a killed worker's page is retried when its start-to-close timeout (2 minutes
            # in this tree) passes
            fault_span=lambda size: 130,
            settings=lambda size: {"audience_page_size": 50_000},
        ),
    ]
}
