"""The frequency cap's count of delivered pushes (tidings.store.caps), on SQLite and
PostgreSQL: one push per workflow, node and visit, whatever devices it reached."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from activities.contracts import FrequencyCap
from tidings.store.caps import capped_profiles
from tidings.store.db import Database
from tidings.store.models import Delivery, DeliveryStatus
from tidings.store.types import utcnow

_rows = itertools.count(1)


async def sent(
    db: Database,
    profile_id: str,
    at: datetime,
    *,
    workflow_id: str = "wf-other",
    node_id: str = "push",
    visit: int = 0,
    devices: int = 1,
    status: DeliveryStatus = DeliveryStatus.DELIVERED,
) -> None:
    """A push to the profile, as the ledger holds it: one row per device it went to."""
    async with db.write() as session:
        for device in range(devices):
            n = next(_rows)
            session.add(
                Delivery(
                    send_key=f"{workflow_id}:{node_id}:{visit}:{device}:{n}",
                    tracking_id=f"t{n}",
                    run_id="run",
                    workflow_id=workflow_id,
                    journey_id="j",
                    node_id=node_id,
                    visit=visit,
                    app_id="app",
                    profile_id=profile_id,
                    device_id=device,
                    provider="apns",
                    status=status,
                    created_at=at,
                )
            )


async def capped(
    db: Database, cap: FrequencyCap, visits: dict[str, int], now: datetime
) -> dict[str, str]:
    async with db.read() as session:
        return await capped_profiles(
            session, cap, visits, workflow_id="wf", node_id="push", now=now
        )


async def test_no_cap_or_no_profiles_hold_nobody_back(db: Database) -> None:
    now = utcnow()
    await sent(db, "ann", now - timedelta(minutes=1))
    assert await capped(db, FrequencyCap(), {"ann": 0}, now) == {}
    assert await capped(db, FrequencyCap(per_24h=1), {}, now) == {}


async def test_a_push_to_several_devices_counts_once_and_only_delivered_pushes_count(
    db: Database,
) -> None:
    now = utcnow()
    await sent(db, "ann", now - timedelta(hours=1), workflow_id="a", devices=3)
    await sent(db, "bob", now - timedelta(hours=1), workflow_id="a")
    await sent(db, "bob", now - timedelta(hours=2), workflow_id="b")
    await sent(db, "cy", now - timedelta(hours=1), workflow_id="a", status=DeliveryStatus.FAILED)
    await sent(db, "cy", now - timedelta(hours=1), workflow_id="b", status=DeliveryStatus.NOT_SENT)
    held = await capped(db, FrequencyCap(per_24h=2), {"ann": 0, "bob": 0, "cy": 0}, now)
    assert held == {"bob": "frequency cap: 2 pushes in 24h (limit 2)"}


async def test_rolling_windows_count_what_falls_inside_them_and_name_the_shortest_hit(
    db: Database,
) -> None:
    now = utcnow()
    for days in (2, 3, 4):
        await sent(db, "ann", now - timedelta(days=days), workflow_id=f"w{days}")
    await sent(db, "bob", now - timedelta(days=10), workflow_id="old")
    await sent(db, "bob", now - timedelta(days=31), workflow_id="older")  # outside every window
    await sent(db, "cy", now - timedelta(hours=1), workflow_id="x")
    await sent(db, "cy", now - timedelta(days=5), workflow_id="y")
    cap = FrequencyCap(per_24h=1, per_7d=3, per_30d=2)
    held = await capped(db, cap, {"ann": 0, "bob": 0, "cy": 0}, now)
    assert held == {
        "ann": "frequency cap: 3 pushes in 7d (limit 3)",
        "cy": "frequency cap: 1 pushes in 24h (limit 1)",
    }
    # bob's one push in 30 days is under every limit
    assert "bob" not in held


async def test_the_send_being_planned_is_never_counted_against_itself(db: Database) -> None:
    now = utcnow()
    # an earlier attempt of this very send (workflow wf, node push, visit 1) reached ann
    await sent(db, "ann", now - timedelta(minutes=1), workflow_id="wf", visit=1, devices=2)
    cap = FrequencyCap(per_24h=1)
    assert await capped(db, cap, {"ann": 1}, now) == {}
    # the node's earlier visit is another push, and counts
    assert await capped(db, cap, {"ann": 2}, now) == {
        "ann": "frequency cap: 1 pushes in 24h (limit 1)"
    }


async def test_a_large_audience_is_counted_across_query_chunks(db: Database) -> None:
    now = utcnow()
    profiles = {f"p{n:04d}": 0 for n in range(1000)}
    for n in range(0, 1000, 100):  # every hundredth profile already had a push today
        await sent(db, f"p{n:04d}", now - timedelta(hours=3))
    held = await capped(db, FrequencyCap(per_24h=1), profiles, now)
    assert sorted(held) == [f"p{n:04d}" for n in range(0, 1000, 100)]
