"""The sampled gauges read the store's work in progress: events waiting for the forwarder,
and how long the oldest has waited."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from tidings.observe.sampler import sample_once
from tidings.store.db import Database
from tidings.store.models import CustomEvent, WebhookDelivery, WebhookEndpoint
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


async def test_webhook_backlog_counts_events_waiting_not_those_set_aside(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        session.add(
            WebhookEndpoint(
                id="wh_0000000000000001",
                url="https://hooks.example/",
                event_types=["run.started"],
                secret="enc:unused",
                created_by="admin",
            )
        )
        await session.flush()
        for n, (age, sent, set_aside) in enumerate(
            ((300, None, None), (10, None, None), (900, now, None), (900, None, now))
        ):
            session.add(
                WebhookDelivery(
                    endpoint_id="wh_0000000000000001",
                    event_id=f"evt_{n}",
                    event_type="run.started",
                    payload={},
                    created_at=now - timedelta(seconds=age),
                    forwarded_at=sent,
                    forward_failed_at=set_aside,
                )
            )
    await sample_once(db, None)
    assert gauge("tidings_forwarder_backlog", kind="webhooks") == 2
    assert 300 <= gauge("tidings_forwarder_lag_seconds", kind="webhooks") < 900
