"""`tidings webhooks ...` and `tidings runs export` on the store a running stack uses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.scene import SceneFactory, journey, push
from tests.webhooks.conftest import Receiver, eventually
from tidings.cli.app import app


async def tidings(*args: str) -> Result:
    """The command, in a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def test_webhooks_commands_and_the_export(
    webhook_scene: SceneFactory,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    async with receiver.serving(), webhook_scene() as s:
        settings = s.stack.settings
        monkeypatch.setenv("TIDINGS_HOME", str(settings.home))
        monkeypatch.setenv("TIDINGS_DATABASE_URL", settings.resolved_database_url)
        monkeypatch.setenv("TIDINGS_ADMIN_KEY", "test-admin-key")
        monkeypatch.setenv("TIDINGS_CALLBACK_ALLOWED", "127.0.0.1")

        created = await tidings("webhooks", "create", receiver.url, "-e", "run.finished")
        assert created.exit_code == 0, created.output
        secret = created.output.split("shown this once): ")[1].split()[0]
        assert secret.startswith("whsec_")
        listed = await tidings("webhooks", "list", "--json")
        assert listed.exit_code == 0, listed.output
        [endpoint] = json.loads(listed.output)
        assert secret not in listed.output
        refused = await tidings("webhooks", "create", "http://10.0.0.1/x", "-e", "push.sent")
        assert refused.exit_code == 1
        assert "private" in refused.output

        for profile in ("ivy", "jon"):
            await s.profile(profile)
        started = await s.start_journey(journey(push("hello")), ["ivy", "jon"])
        await s.finish(started)
        await eventually(lambda: len(receiver.received) == 1, "run.finished at the receiver")

        paused = await tidings("webhooks", "pause", endpoint["id"])
        assert paused.exit_code == 0, paused.output
        shown = await tidings("webhooks", "show", endpoint["id"], "--json")
        assert json.loads(shown.output)["paused"] is True
        assert (await tidings("webhooks", "requeue", endpoint["id"])).exit_code == 0

        out = tmp_path / "run.ndjson"
        exported = await tidings("runs", "export", started.run_id, "-o", str(out))
        assert exported.exit_code == 0, exported.output
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        pushes = [line["tracking_id"] for line in lines if line["record"] == "push"]
        assert pushes == [row.tracking_id for row in await s.ledger(started.run_id)]
        missing = await tidings("runs", "export", "no-such-run")
        assert missing.exit_code == 1

        deleted = await tidings("webhooks", "delete", endpoint["id"])
        assert deleted.exit_code == 0, deleted.output
        gone = await tidings("webhooks", "show", endpoint["id"])
        assert gone.exit_code == 1
