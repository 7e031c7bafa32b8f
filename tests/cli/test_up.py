"""`tidings up`, run as a user runs it: every piece listens where it says, another command
(the demo) joins its stack and leaves it running, and one Ctrl-C stops everything it started,
leaving no process and no listening port behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from tests.cli.processes import (
    TIDINGS,
    clean_env,
    dev_servers_of,
    family,
    listening_ports,
    running,
    start,
    stop,
    wait_for_exit,
    wait_for_line,
)
from tidings.temporal.devserver import free_port, reachable

LABELS = ("API", "OpenAPI docs", "console", "Temporal", "Temporal UI", "simulators")


def printed(output: str) -> dict[str, str]:
    """The first address on each labelled line of the banner."""
    found = {}
    for label in LABELS:
        line = re.search(rf"^  {label} +(?:control API )?(\S+)", output, re.MULTILINE)
        assert line, f"{label!r} missing from:\n{output}"
        found[label] = line.group(1)
    return found


def port_of(address: str) -> int:
    """The port of ``host:port`` or of a URL."""
    found = re.search(r":(\d+)(?:/|$)", address)
    assert found, address
    return int(found.group(1))


async def test_up_serves_the_stack_and_one_ctrl_c_stops_everything(
    tmp_path: Path, database_url: str
) -> None:
    home = tmp_path / "home"
    env = clean_env(
        TIDINGS_HOME=str(home),
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_ENV="development",  # PostgreSQL beside the embedded server, on purpose
        TIDINGS_API_PORT=str(free_port()),
    )
    log = tmp_path / "up.log"
    up = start([str(TIDINGS), "up"], env, log)
    try:
        await wait_for_line(up, log, r"^ready; Ctrl-C stops everything")
        where = printed(log.read_text())
        record = json.loads((home / "temporal.json").read_text())
        assert where["Temporal"] == record["address"]
        assert where["Temporal UI"] == record["ui_address"]
        assert "(embedded, started here)" in log.read_text()
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{where['API']}/healthz")).json() == {"status": "ok"}
            assert (await http.get(where["OpenAPI docs"])).status_code == 200
            # the console sends a visitor without a session to its log-in form
            console_page = await http.get(where["console"], follow_redirects=True)
            assert console_page.status_code == 200
            assert "Admin key" in console_page.text
            assert (await http.get(where["Temporal UI"])).status_code == 200
            assert (await http.get(f"{where['simulators']}/healthz")).status_code == 200
        temporal = await Client.connect(where["Temporal"])
        assert await temporal.workflow_service.get_system_info(GetSystemInfoRequest())
        endpoints = json.loads((home / "sim" / "endpoints.json").read_text())
        assert endpoints["control_url"] == where["simulators"]
        assert endpoints["pid"] == up.pid

        # another command joins this stack, and leaves it as it found it
        demo = await asyncio.to_thread(
            subprocess.run,
            [str(TIDINGS), "demo", "--profiles", "5", "--exit"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert f"Temporal at {record['address']}" in demo.stdout
        assert demo.stdout.count("(already running") == 2  # Temporal and the simulators
        assert json.loads((home / "temporal.json").read_text()) == record
        assert up.poll() is None

        # up and its children, the dev server among them (in a session of its own)
        pieces = family(up.pid)
        assert [p.pid for p in dev_servers_of(home)] == [record["pid"]]
        assert record["pid"] in {p.pid for p in pieces}
        ports = listening_ports(pieces)
        announced = {port_of(where[label]) for label in LABELS}
        assert announced <= ports

        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in up's terminal
        assert await wait_for_exit(up) == 0, log.read_text()
        assert [p.pid for p in pieces if running(p)] == []
        assert [port for port in ports if reachable("127.0.0.1", port)] == []
        assert json.loads((home / "temporal.json").read_text())["pid"] is None
        assert not (home / "sim" / "endpoints.json").exists()
    finally:
        await asyncio.to_thread(stop, up)
        for server in dev_servers_of(home):
            server.kill()
