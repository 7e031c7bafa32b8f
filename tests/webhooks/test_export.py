"""A run exported as NDJSON: every push, then every interaction, streamed page by page."""

from __future__ import annotations

import json

from tests.scene import SceneFactory, journey, push
from tidings.runs.export import export_run


async def test_the_export_streams_every_push_and_interaction_of_a_run(
    webhook_scene: SceneFactory,
) -> None:
    async with webhook_scene() as s:
        profiles = [f"p{n}" for n in range(5)]
        for profile in profiles:
            await s.profile(profile, devices=("apns", "fcm"))
        started = await s.start_journey(journey(push("hello")), profiles)
        await s.finish(started)
        rows = await s.ledger(started.run_id)
        assert len(rows) == 10
        await s.interact(rows[3], "opened")
        await s.interact(rows[3], "clicked")

        async with s.stack.http.stream("GET", f"/v1/runs/{started.run_id}/export") as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) async for line in answer.aiter_lines() if line]
        assert lines[0]["record"] == "run"
        assert lines[0]["run_id"] == started.run_id
        pushes = [line for line in lines if line["record"] == "push"]
        assert [p["tracking_id"] for p in pushes] == [r.tracking_id for r in rows]
        assert {p["outcome"] for p in pushes} == {"delivered"}
        interactions = [line for line in lines if line["record"] == "interaction"]
        assert [(i["kind"], i["tracking_id"]) for i in interactions] == [
            ("opened", rows[3].tracking_id),
            ("clicked", rows[3].tracking_id),
        ]

        # pages smaller than the run: the same lines
        paged = [json.loads(line) async for line in export_run(s.db, started.run_id, 3)]
        assert paged == lines

        missing = await s.stack.http.get("/v1/runs/no-such-run/export")
        assert missing.status_code == 404
