"""The sampled gauges read the store's work in progress: events waiting for the forwarder,
and how long the oldest has waited."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from tidings.observe.sampler import sample_once
from tidings.store.db import Database
from tidings.store.models import CustomEvent
from tidings.store.types import utcnow


def gauge(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def test_forwarder_backlog_and_lag_of_custom_events(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        for n, age in enumerate((120, 5)):
            session.add(
                CustomEvent(
                    event_id=f"e{n}",
                    profile_id="p",
                    name="arrived",
                    occurred_at=now - timedelta(seconds=age),
                    received_at=now - timedelta(seconds=age),
                )
            )
        session.add(
            CustomEvent(
                event_id="done",
                profile_id="p",
                name="arrived",
                occurred_at=now,
                received_at=now - timedelta(hours=1),
                forwarded_at=now,
            )
        )
    await sample_once(db, None)
    assert gauge("tidings_forwarder_backlog", kind="custom_events") == 2
    assert 120 <= gauge("tidings_forwarder_lag_seconds", kind="custom_events") < 3600
    assert gauge("tidings_forwarder_backlog", kind="interactions") == 0
    assert gauge("tidings_forwarder_lag_seconds", kind="interactions") == 0
    assert gauge("tidings_ledger_open_rows") == 0
