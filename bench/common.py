"""What every benchmark needs: a private embedded stack with the simulators and a worker in
their own processes, a seeded store, and Temporal history accounting.

Each benchmark runs in a fresh directory (``--home``, default a temporary one), so runs never
see each other's state. The simulators and the worker are separate processes, as in a real
deployment: the worker's peak RSS is its own, and the simulators' CPU is not the worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.client import Client

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tidings.imports.service import ImportFormat, import_profiles  # noqa: E402
from tidings.push.credentials import (  # noqa: E402
    ApnsTokenCredentials,
    AppCredentials,
    FcmCredentials,
)
from tidings.settings import Settings  # noqa: E402
from tidings.sim import SimulatorClient, read_endpoints  # noqa: E402
from tidings.store.apps import set_credentials  # noqa: E402
from tidings.store.db import Database  # noqa: E402
from tidings.store.migrate import upgrade  # noqa: E402
from tidings.store.models import App  # noqa: E402
from tidings.store.secrets import SecretBox  # noqa: E402
from tidings.temporal.client import connect  # noqa: E402
from tidings.temporal.devserver import free_port, start_dev_server  # noqa: E402

BUNDLE_ID = "com.example.tidings.bench"
TEAM_ID = "BENCHTEAM1"
KEY_ID = "BENCHKEY01"
PROJECT = "tidings-bench"
APP_ID = "bench"


# aioapns warns while a new connection waits for Apple's first SETTINGS; the benchmark's own
# sends (the transport ceiling) would print that on every run.
logging.getLogger("aioapns").setLevel(logging.ERROR)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class BenchStack:
    home: Path
    settings: Settings
    env: dict[str, str]
    client: Client
    sims: SimulatorClient
    credentials: AppCredentials


@contextlib.contextmanager
def bench_home(path: str | None) -> Iterator[Path]:
    if path:
        home = Path(path).resolve()
        home.mkdir(parents=True, exist_ok=True)
        yield home
        return
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        yield Path(tmp)


def _wait_for_file(path: Path, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit code {process.poll()})")
        time.sleep(0.05)


@contextlib.asynccontextmanager
async def bench_stack(
    home: Path, database_url: str | None = None, **settings_overrides: Any
) -> AsyncIterator[BenchStack]:
    """Temporal's dev server, the simulators process, a migrated store (SQLite unless
    ``database_url`` names another), credentials."""
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TIDINGS_", "TEMPORAL_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    # Bytecode is cached, as on any deployed worker: the workflow sandbox imports each
    # workflow's module afresh for every run, and without a cache it compiles the source each
    # time (a shell with PYTHONDONTWRITEBYTECODE would charge that to every workflow run). The
    # cache lives in the run's directory, not the checkout.
    base_env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    database_url = database_url or f"sqlite:///{home / 'tidings.db'}"
    upgrade(database_url)
    server = start_dev_server(home / "temporal")
    sim_log = (home / "sim.log").open("wb")
    sim = subprocess.Popen(
        [sys.executable, "-m", "tidings.sim", "--home", str(home)],
        env=base_env,
        stdout=sim_log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_file(home / "sim" / "endpoints.json", sim, "the simulators")
        endpoints = read_endpoints(home)
        env = base_env | {
            "TIDINGS_HOME": str(home),
            "TIDINGS_DATABASE_URL": database_url,
            "TIDINGS_APNS_ENDPOINT": endpoints["apns_endpoint"],
            "TIDINGS_FCM_ENDPOINT": endpoints["fcm_endpoint"],
            "TIDINGS_PROVIDER_CA_FILE": endpoints["ca_file"],
            "TIDINGS_LOG_LEVEL": "WARNING",
            "TEMPORAL_ADDRESS": server.address,
            # PostgreSQL beside a dev server on purpose: not the production topology
            "TIDINGS_ENV": "development",
        }
        env.update({f"TIDINGS_{k.upper()}": str(v) for k, v in settings_overrides.items()})
        settings = Settings(
            _env_file=None,
            home=home,
            database_url=database_url,
            apns_endpoint=endpoints["apns_endpoint"],
            fcm_endpoint=endpoints["fcm_endpoint"],
            provider_ca_file=Path(endpoints["ca_file"]),
            **settings_overrides,
        )
        client = await connect(server.address)
        async with SimulatorClient(endpoints["control_url"]) as sims:
            key = await sims.create_apns_key(TEAM_ID, KEY_ID, [BUNDLE_ID])
            account = await sims.create_fcm_service_account(PROJECT)
            credentials = AppCredentials(
                app_id=APP_ID,
                version=1,
                apns=ApnsTokenCredentials(
                    team_id=TEAM_ID,
                    key_id=KEY_ID,
                    bundle_id=BUNDLE_ID,
                    signing_key=key,
                ),
                fcm=FcmCredentials(service_account=json.dumps(account)),
            )
            yield BenchStack(home, settings, env, client, sims, credentials)
    finally:
        sim.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(timeout=10)
        if sim.poll() is None:
            sim.kill()
        sim_log.close()
        server.stop()


def device_token(profile: int, device: int, provider: str) -> str:
    digest = hashlib.sha256(f"bench/{profile}/{device}".encode()).hexdigest()
    return digest if provider == "apns" else f"bench-{digest[:20]}:APA91b{digest[20:]}"


@dataclass(frozen=True)
class SeededDevice:
    profile_id: str
    provider: str
    token: str


async def seed(
    stack: BenchStack,
    profiles: int,
    seed: int = 1,
    attributes: Callable[[int], dict[str, Any]] | None = None,
) -> list[SeededDevice]:
    """N profiles with about 1.5 devices each, iOS and Android mixed, written in bulk;
    ``attributes`` adds attributes to the n-th profile's."""
    rng = random.Random(seed)
    db = Database(stack.settings.resolved_database_url)
    box = SecretBox.from_settings(None, stack.home)
    devices: list[SeededDevice] = []
    try:
        async with db.write() as session:
            app = App(id=APP_ID, name="Bench", credentials_version=0)
            set_credentials(app, box, apns=stack.credentials.apns, fcm=stack.credentials.fcm)
            session.add(app)
        rows: list[bytes] = []
        for n in range(profiles):
            profile_id = f"p{n:07d}"
            row: dict[str, Any] = {
                "id": profile_id,
                "attributes": {"first_name": f"P{n}"} | (attributes(n) if attributes else {}),
            }
            row["devices"] = []
            for d in range(1 if rng.random() < 0.5 else 2):
                provider = "apns" if rng.random() < 0.5 else "fcm"
                token = device_token(n, d, provider)
                devices.append(SeededDevice(profile_id, provider, token))
                row["devices"].append({"app": APP_ID, "provider": provider, "token": token})
            rows.append(json.dumps(row).encode() + b"\n")

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(rows), 1000):
                yield b"".join(rows[start : start + 1000])

        # the bulk import's own path (POST /v1/profiles/import without HTTP)
        report = await import_profiles(db, body(), ImportFormat.NDJSON)
        if report.failed:
            raise RuntimeError(f"seeding failed: {report.errors[:3]}")
    finally:
        await db.dispose()
    return devices


class WorkerProcess:
    """``python worker.py`` in its own process, sampled for peak RSS."""

    def __init__(self, env: dict[str, str], home: Path, tree: Path = REPO) -> None:
        """``tree``: the checkout whose worker.py runs (its own tidings beside it)."""
        self._log = (home / "worker.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(tree / "worker.py")],
            env=env,
            cwd=home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.peak_rss = 0
        self._sampler: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkerProcess:
        self._sampler = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while self.process.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 30)
        if self._sampler:
            self._sampler.cancel()
        self._log.close()

    @property
    def peak_rss_mb(self) -> float:
        return round(self.peak_rss / 2**20, 1)


class ApiProcess:
    """``tidings api`` (uvicorn) in its own process, as a deployment runs it; its base URL and
    admin key for the benchmark's requests."""

    ADMIN_KEY = "bench-admin-key"

    def __init__(self, env: dict[str, str], home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (home / "api.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tidings.cli.app import main; main()", "api"],
            env=env
            | {
                "TIDINGS_API_PORT": str(self.port),
                "TIDINGS_ADMIN_KEY": self.ADMIN_KEY,
                "TIDINGS_LOG_LEVEL": "WARNING",
            },
            cwd=home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def __aenter__(self) -> ApiProcess:
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(600):
                if self.process.poll() is not None:
                    raise RuntimeError(f"the API exited with code {self.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/healthz")).status_code == 200:
                        return self
                await asyncio.sleep(0.1)
        raise RuntimeError("the API did not answer in time")

    async def __aexit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 30)
        self._log.close()


async def workflow_history_events(client: Client, workflow_ids: list[str]) -> int:
    """History events of these workflows, counted from their histories (exact, unlike the
    visibility store's lagging history lengths)."""
    total = 0
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        total += len(history.events)
    return total


async def history_events(client: Client, workflow_id_prefix: str) -> tuple[int, int]:
    """(events, executions) over every execution whose workflow id starts with the prefix:
    the run workflow, all its continue-as-new runs and every cohort."""
    events = executions = 0
    query = f'WorkflowId STARTS_WITH "{workflow_id_prefix}"'
    async for execution in client.list_workflows(query):
        executions += 1
        events += execution.history_length
    return events, executions


def export_tree(ref: str, into: Path) -> Path:
    """The tree of git ``ref`` as plain files (the checkout itself is left alone)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def emit(result: dict[str, Any]) -> None:
    """The benchmark's last line of output: one JSON object."""
    print(json.dumps(result, sort_keys=True), flush=True)


def process_roles() -> dict[str, list[psutil.Process]]:
    """This process and each process it started, by role: bench, api, worker, temporal,
    simulators."""
    found: dict[str, list[psutil.Process]] = {}
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            role = (
                "bench"
                if process.pid == me.pid
                else "temporal"
                if "temporal" in command and "start-dev" in command
                else "simulators"
                if "tidings.sim" in command
                else "worker"
                if "worker.py" in command
                else "api"
                if "main()" in command
                else None
            )
            if role:
                found.setdefault(role, []).append(process)
    return found


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) so far of this process and each process it started, by role,
    and of a local PostgreSQL server's processes (``postgres``) when one runs."""
    found: dict[str, float] = {}
    for role, processes in process_roles().items():
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[role] = found.get(role, 0.0) + times.user + times.system
    postgres = postgres_cpu_seconds()
    if postgres is not None:
        found["postgres"] = postgres
    return found


def postgres_cpu_seconds() -> float | None:
    """CPU time so far of the local PostgreSQL servers: each postmaster, the backends it has
    reaped (its children's times) and those still running. The server is not the benchmark's
    child, so it is found by name; on an idle machine all of its work is the benchmark's."""
    total: float | None = None
    for process in psutil.process_iter(["name", "ppid"]):
        if process.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total = (total or 0.0) + times.user + times.system
            parent = psutil.Process(process.info["ppid"])
            if parent.name() != "postgres":  # the postmaster: add the backends it reaped
                total += times.children_user + times.children_system
    return total


def cpu_us_per_unit(
    before: dict[str, float], after: dict[str, float], units: int
) -> dict[str, float]:
    """CPU microseconds each role spent per unit between two :func:`cpu_seconds` readings."""
    return {
        role: round((after[role] - before.get(role, 0.0)) * 1e6 / max(1, units), 1)
        for role in sorted(after)
    }


def rss_mb(role: str) -> float:
    """Resident memory now of the processes of a role, in MiB."""
    total = 0
    for process in process_roles().get(role, []):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return round(total / 2**20, 1)


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--store`` and ``--postgres``, read by :func:`bench_database`."""
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="with --store postgres: a server on which a fresh database is made and dropped",
    )


@contextlib.contextmanager
def bench_database(store: str, server_url: str) -> Iterator[str | None]:
    """The store's URL for one benchmark: None for SQLite (a file in the run's directory), or
    a fresh PostgreSQL database on ``server_url``'s server, dropped afterwards."""
    if store == "sqlite":
        yield None
        return
    import psycopg  # only the PostgreSQL runs need the driver here

    name = f"tidings_bench_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def store_size_mb(database_url: str) -> float:
    """The store's size on disk: the SQLite file (with its WAL), or the PostgreSQL
    database's."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[1])
        files = [path, path.with_name(path.name + "-wal")]
        return round(sum(f.stat().st_size for f in files if f.exists()) / 2**20, 1)
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT pg_database_size(current_database())")
        row = await cursor.fetchone()
    assert row is not None
    return round(int(row[0]) / 2**20, 1)
