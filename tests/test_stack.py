"""The embedded Temporal dev server: file-backed under its home, its SQLite in WAL mode, and
serving workflows with the options tidings starts it with."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from tidings.temporal.devserver import start_dev_server


@activity.defn(name="stack-test-echo")
async def echo(text: str) -> str:
    return text


@workflow.defn(name="StackTestEcho")
class EchoWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            echo, text, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_dev_server_keeps_its_state_in_a_wal_mode_sqlite_file(tmp_path: Path) -> None:
    home = tmp_path / "temporal"
    server = await asyncio.to_thread(start_dev_server, home)
    try:
        client = await Client.connect(server.address)
        queue = f"stack-test-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[EchoWorkflow], activities=[echo]):
            result = await client.execute_workflow(
                EchoWorkflow.run, "hello", id=f"echo-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
        assert result == "hello"
        database = home / "temporal.db"
        assert database.exists()
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
    finally:
        await asyncio.to_thread(server.stop)
