"""The processes a fault trial owns, each by its PID, so it can kill and restart them: a
private PostgreSQL server, Temporal's dev server, the simulators and the worker.

Nothing here touches a process the suite did not start: every stop and kill goes to a PID
this module holds.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import psycopg

from tidings.temporal.devserver import DevServer, free_port, start_dev_server

REPO = Path(__file__).resolve().parents[2]
POSTGRES_USER = "postgres"  # the OS user PostgreSQL runs as when the suite runs as root


class SetupError(RuntimeError):
    """Something the suite needs is missing; the message says what."""


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding initdb and pg_ctl, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _wait_for_exit(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    if process.poll() is None:
        process.kill()
        process.wait()


class PrivatePostgres:
    """A PostgreSQL server of the suite's own: ``initdb`` into a temporary directory, the
    postmaster started as a child on a free port (trust auth, loopback only), so a trial can
    stop it abruptly and start it again on the same data and port."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise SetupError(
                "PostgreSQL's initdb/pg_ctl/postgres were not found under "
                "/usr/lib/postgresql/*/bin or on PATH (install the postgresql package)"
            )
        self._bin = bin_dir
        self._root = Path(tempfile.mkdtemp(prefix="tidings-faults-pg-"))
        self._data = self._root / "data"
        self._log_path = self._root / "postgres.log"
        self.port = free_port()
        self._run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: its files and process belong to its own user
            try:
                user = pwd.getpwnam(POSTGRES_USER)
            except KeyError:
                raise SetupError(
                    f"running as root, PostgreSQL needs the OS user {POSTGRES_USER!r}"
                ) from None
            os.chown(self._root, user.pw_uid, user.pw_gid)
            self._run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self._data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self._root,
            **self._run_as,
        )

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the postmaster and wait until it accepts connections."""
        self._log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(self._data),
                "-p",
                str(self.port),
                "-k",
                str(self._root),
                "-c",
                "listen_addresses=127.0.0.1",
                # the process may crash, the machine does not: the OS keeps what was written
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._root,
            **self._run_as,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise SetupError(f"PostgreSQL exited at start; see {self._log_path}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise SetupError(
                        f"PostgreSQL did not accept connections; see {self._log_path}"
                    ) from error
                time.sleep(0.1)

    def crash(self) -> None:
        """Stop at once, as a crash would: SIGQUIT is PostgreSQL's immediate shutdown (no
        checkpoint; the next start recovers from the WAL); every client connection drops."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            _wait_for_exit(self.process, 30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            _wait_for_exit(self.process, 30)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._root, ignore_errors=True)


class Temporal:
    """Temporal's dev server (tidings.temporal.devserver), restartable on the same database
    file and port."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server: DevServer | None = None

    def start(self) -> None:
        self._server = start_dev_server(self._home, port=self.port)
        if self._server.process is None:
            raise SetupError(f"another Temporal dev server already serves {self._home}")

    def crash(self) -> None:
        """SIGKILL: no shutdown of any kind (its SQLite keeps what was committed)."""
        if self._server is not None and self._server.process is not None:
            process = self._server.process
            if process.poll() is None:
                process.kill()
            process.wait()
        self._server = None

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class Simulators:
    """``python -m tidings.sim`` in its own process; records without payloads (less memory:
    the tracking and collapse ids are kept)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self._log = (home / "sim.log").open("wb")
        self._endpoints = home / "sim" / "endpoints.json"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidings.sim",
                "--home",
                str(home),
                "--no-record-payloads",
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self._endpoints.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SetupError(f"the simulators did not start; see {home / 'sim.log'}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            _wait_for_exit(self.process, 10)
        self._log.close()


class Workers:
    """``python worker.py``, one process at a time, as a supervisor runs it: a worker that
    dies is replaced. ``kill`` is the fault (SIGKILL, then a new worker at once); a worker
    that exits on its own is replaced too and counted in ``unexpected_exits``.

    ``kill`` and ``replace_if_dead`` run on threads: a lock keeps the supervisor from taking
    a worker killed a moment ago for one that died, which would leave two workers running.
    """

    def __init__(self, env: dict[str, str], home: Path, command: Sequence[str] = ()) -> None:
        self._env = env
        self._home = home
        self._command = list(command) or [sys.executable, str(REPO / "worker.py")]
        self._log_path = home / "worker.log"
        self._lock = threading.Lock()
        self._all: list[subprocess.Popen[bytes]] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.unexpected_exits = 0
        # how the workers that died on their own ended: exit code (negative: the signal)
        self.exit_codes: Counter[int] = Counter()
        self._stopping = False

    @property
    def started(self) -> int:
        return len(self._all)

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        with self._log_path.open("ab") as log:
            log.write(f"--- worker {len(self._all) + 1} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self._command,
                env=self._env,
                cwd=self._home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._all.append(self.process)

    def kill(self) -> None:
        """SIGKILL the running worker and start its replacement."""
        with self._lock:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._start()

    def replace_if_dead(self) -> bool:
        """A supervisor's round: start a new worker if the last one exited. True if it did."""
        with self._lock:
            if self._stopping or self.process is None or self.process.poll() is None:
                return False
            self.unexpected_exits += 1
            self.exit_codes[self.process.returncode] += 1
            self._start()
            return True

    def log_tail(self, lines: int = 20) -> list[str]:
        """The workers' last lines of output: why one died, when one did."""
        with self._log_path.open("rb") as log:
            text = log.read()[-64 * 1024 :].decode(errors="replace")
        return [line for line in text.splitlines() if not line.startswith("--- worker")][-lines:]

    def stop(self) -> None:
        """SIGTERM every worker still running (a graceful stop), SIGKILL past the grace."""
        with self._lock:
            self._stopping = True
            running = [p for p in self._all if p.poll() is None]
            for process in running:
                process.send_signal(signal.SIGTERM)
            for process in running:
                _wait_for_exit(process, 45)
