"""tidings' processes as a user starts them: the `tidings` command and `python worker.py`,
each a child this test owns by pid, in a process group of its own (a terminal's Ctrl-C
reaches the group); and what can be seen of them from outside (pids, listening ports)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil

REPO = Path(__file__).parents[2]  # no resolve(): workflow sandboxes import this module too
TIDINGS = Path(sys.executable).parent / "tidings"


def clean_env(**values: str) -> dict[str, str]:
    """This environment without any TIDINGS_ or TEMPORAL_ setting, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "TEMPORAL_"))}
    return env | {"COLUMNS": "300"} | values


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def wait_for_line(
    process: subprocess.Popen[bytes], log: Path, pattern: str, *, after: int = 0
) -> re.Match[str]:
    """The first line of ``log`` (from byte ``after``) matching ``pattern``; the limit only
    bounds a broken run."""
    for _ in range(1200):
        text = (await asyncio.to_thread(log.read_bytes))[after:].decode(errors="replace")
        found = re.search(pattern, text, re.MULTILINE)
        if found:
            return found
        assert process.poll() is None, f"{process.args!r} exited early:\n{text}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared in {log}:\n{text}")


async def wait_for_exit(process: subprocess.Popen[bytes], limit_s: float = 60) -> int:
    return await asyncio.to_thread(process.wait, limit_s)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Whatever happened in the test, leave nothing of it running."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def family(pid: int) -> list[psutil.Process]:
    """The process and every descendant, whatever session they run in."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listening_ports(processes: list[psutil.Process]) -> set[int]:
    ports = set()
    for process in processes:
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                ports.add(connection.laddr.port)
    return ports


def running(process: psutil.Process) -> bool:
    """Still there and no zombie (a zombie holds no port and runs nothing)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def dev_servers_of(home: Path) -> list[psutil.Process]:
    """The dev-server processes running on this home's database."""
    database = str(home.resolve() / "temporal.db")
    return [p for p in live_processes() if database in (p.info["cmdline"] or [])]


def live_processes() -> Iterator[psutil.Process]:
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.info["status"] != psutil.STATUS_ZOMBIE:
            yield process
