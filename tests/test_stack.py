"""The embedded Temporal dev server: file-backed under its home, its SQLite in WAL mode, and
serving workflows with the options tidings starts it with; one per home, shared by every
process, outliving the one that started it until `tidings down`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import Worker

# the echo workflow below makes the sandbox import this module: what the tests use beside it
# passes through
with workflow.unsafe.imports_passed_through():
    from tests.cli.processes import dev_servers_of
    from tidings.settings import Settings
    from tidings.temporal.devserver import (
        find_dev_server,
        free_port,
        reachable,
        start_dev_server,
        stop_dev_server,
        temporal_server,
    )


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


# --- one server per home, outliving whoever started it ------------------------------------

STARTER = """
import json, sys, time
from tidings.temporal.devserver import start_dev_server
server = start_dev_server(sys.argv[1])
print(json.dumps({"address": server.address, "pid": server.pid, "mine": server.started_here}))
sys.stdout.flush()
time.sleep(600)
"""


def _tidings(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    env.update(TIDINGS_HOME=str(home), COLUMNS="300")
    tidings = Path(sys.executable).parent / "tidings"
    return subprocess.run(
        [str(tidings), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_two_processes_starting_at_once_share_one_server_that_outlives_them(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(home)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # each its own process group, as a terminal would have
        )
        for _ in range(2)
    ]
    try:
        said = [json.loads(s.stdout.readline()) for s in starters if s.stdout is not None]
        assert len(said) == 2
        assert said[0]["address"] == said[1]["address"]
        assert said[0]["pid"] == said[1]["pid"]
        assert sorted(s["mine"] for s in said) == [False, True]
        record = json.loads((home / "temporal.json").read_text())
        assert record["address"] == said[0]["address"]
        assert record["pid"] == said[0]["pid"]
        assert record["ui_address"].startswith("http://127.0.0.1:")
        # Ctrl-C in the starters' terminals, then a kill: neither reaches the server
        for starter in starters:
            os.killpg(starter.pid, signal.SIGINT)
            starter.wait(timeout=30)
        assert [p.pid for p in dev_servers_of(home)] == [record["pid"]]
        host, port = record["address"].rsplit(":", 1)
        assert reachable(host, int(port))
        assert find_dev_server(home) is not None

        down = _tidings("down", home=home)
        assert down.returncode == 0, down.stdout + down.stderr
        assert f"stopped Temporal's dev server at {record['address']}" in down.stdout
        assert dev_servers_of(home) == []
        assert not reachable(host, int(port))
        after = json.loads((home / "temporal.json").read_text())
        assert after["pid"] is None
        assert after["address"] == record["address"]  # the port is kept for the next start
        again = _tidings("down", home=home)
        assert again.returncode == 0
        assert "no embedded Temporal server runs" in again.stdout
    finally:
        for starter in starters:
            if starter.poll() is None:
                starter.kill()
                starter.wait()
        stop_dev_server(home)


def test_a_stale_record_is_replaced_and_the_port_is_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # a server that was killed: its pid is dead, its port no longer answers
    (home / "temporal.json").write_text(
        json.dumps({"pid": gone.pid, "address": f"127.0.0.1:{port}", "port": port})
    )
    server = start_dev_server(home)
    try:
        assert server.started_here
        assert server.address == f"127.0.0.1:{port}"  # where workers still look for it
        assert json.loads((home / "temporal.json").read_text())["pid"] == server.pid
    finally:
        server.stop()
    assert dev_servers_of(home) == []

    # its port taken by another program meanwhile: a free port, chosen once and kept
    with socket.create_server(("127.0.0.1", port)):
        server = start_dev_server(home)
        server.stop()
    moved = server.address
    assert moved != f"127.0.0.1:{port}"
    server = start_dev_server(home)
    try:
        assert server.address == moved
    finally:
        server.stop()
    port = int(moved.rsplit(":", 1)[1])

    # a pid that lives but is no dev server of this home (recycled) is not taken for one
    (home / "temporal.json").write_text(
        json.dumps({"pid": os.getpid(), "address": f"127.0.0.1:{port}", "port": port})
    )
    assert find_dev_server(home) is None
    assert stop_dev_server(home) is None  # and never signalled
    server = start_dev_server(home)
    try:
        assert server.started_here
        assert server.pid != os.getpid()
        assert [p.pid for p in dev_servers_of(home)] == [server.pid]
    finally:
        server.stop()


async def test_the_embedded_server_outlives_the_context_that_started_it(
    tmp_path: Path,
) -> None:
    settings = Settings(_env_file=None, home=tmp_path / "home")
    try:
        async with temporal_server(settings) as address:
            first = await Client.connect(address)
        # the server stays for the next process; it answers at the same address
        assert await first.workflow_service.get_system_info(GetSystemInfoRequest())
        async with temporal_server(settings) as again:
            assert again == address
        assert find_dev_server(settings.home) is not None
    finally:
        stop_dev_server(settings.home)
