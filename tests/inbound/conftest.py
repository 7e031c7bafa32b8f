"""Journeys standing on a delay after their push: the interactions' destination."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlmodel import col, select
from temporalio.client import Client

from tests.harness import Stack
from tests.scene import Scene
from tidings.journeys import parse_definition
from tidings.runs.start import StartedRun
from tidings.store.models import Delivery, DeliveryStatus, Interaction

APP = "fwd"


@dataclass
class Waiting:
    """A run whose profiles got their push and now wait on a long delay."""

    run: StartedRun
    tracking: dict[str, str]  # profile id -> tracking id of its push
    workflow_of: dict[str, str]  # profile id -> its cohort's workflow id


async def waiting_journey(scene: Scene, profiles: int, *, delay: str = "10m") -> Waiting:
    """On a scene (tests.scene) without the forwarder: an app, one iOS device per profile,
    and a push -> delay -> exit journey that has sent every push and now holds every
    profile on the delay."""
    stack = scene.stack
    await scene.add_app(APP, name="Forwarding")
    ids = [f"p{n:03d}" for n in range(profiles)]
    items = [
        {"profile_id": p, "create_profile": True, "provider": "apns", "token": f"{n + 1:064x}"}
        for n, p in enumerate(ids)
    ]
    for start in range(0, len(items), 100):
        answer = await stack.http.post(
            f"/v1/apps/{APP}/devices/batch", json={"items": items[start : start + 100]}
        )
        assert answer.json()["failed"] == 0
    journey = parse_definition(
        {
            "id": "remind",
            "name": "Remind",
            "app": APP,
            "nodes": [
                {"id": "hello", "type": "push", "content": {"body": "hi"}, "next": "pause"},
                {"id": "pause", "type": "delay", "duration": delay, "next": "done"},
                {"id": "done", "type": "exit"},
            ],
        }
    )
    run = await scene.start_journey(journey, ids)
    rows: list[Delivery] = []
    for _ in range(600):
        async with stack.db.read() as session:
            rows = list(
                (
                    await session.exec(
                        select(Delivery)
                        .where(col(Delivery.run_id) == run.run_id)
                        .where(col(Delivery.status) == DeliveryStatus.DELIVERED.value)
                    )
                ).all()
            )
        if len(rows) == profiles:
            break
        await asyncio.sleep(0.1)
    assert len(rows) == profiles
    return Waiting(
        run,
        {r.profile_id: r.tracking_id for r in rows},
        {r.profile_id: r.workflow_id for r in rows},
    )


async def cohort_counts(client: Client, workflow_ids: set[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for workflow_id in sorted(workflow_ids):
        handle = client.get_workflow_handle(workflow_id)
        counts[workflow_id] = await handle.query("counts")
    return counts


async def outbox(stack: Stack) -> list[Interaction]:
    async with stack.db.read() as session:
        return list((await session.exec(select(Interaction).order_by(col(Interaction.id)))).all())
