"""Run the simulators: in-process (:class:`Simulators`) or as a service (:func:`serve`).

:func:`serve` is what ``python -m tidings.sim`` and ``tidings sim`` run. Once listening it
writes ``<home>/sim/endpoints.json`` (atomically), so another process (the demo, the
benchmark) can find the ports and the CA with :func:`read_endpoints`.

One set of simulators serves a home: :func:`shared_simulators` (the demo, ``tidings up``)
reuses the set that ``endpoints.json`` names while it runs, and otherwise serves its own for
as long as its context lasts, published the same way; ``serve`` refuses to start a second
set beside a running one. A lock on ``<home>/sim/sim.lock`` makes two starts at once end with
one set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from .apns import ApnsSimulator
from .control import ControlServer, create_app
from .fcm import FcmSimulator
from .h2server import H2Server
from .oauth import TokenIssuer
from .scenario import load_scenario_file
from .tls import CertificateAuthority

logger = logging.getLogger(__name__)
ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "sim.lock"
LOCK_TIMEOUT_S = 60.0


class SimulatorsRunning(RuntimeError):
    """Simulators already serve the home: reuse them rather than start a second set."""

    def __init__(self, home: Path, endpoints: SimulatorEndpoints) -> None:
        super().__init__(
            f"simulators already serve {home} (pid {endpoints.pid}, control API "
            f"{endpoints.control_url}); use them, or stop that process first"
        )
        self.endpoints = endpoints


class Simulators:
    """The APNs and FCM simulators and their control app, listening until stopped."""

    def __init__(
        self,
        home: Path,
        host: str = "127.0.0.1",
        apns_port: int = 0,
        fcm_port: int = 0,
        control_port: int = 0,
        scenario_file: Path | None = None,
        *,
        record_payloads: bool = True,
    ) -> None:
        self.home = Path(home)
        self.host = host
        self._ports = (apns_port, fcm_port, control_port)
        self._scenario_file = scenario_file
        self._record_payloads = record_payloads
        self._ca = CertificateAuthority(self.home / "sim")
        self._control_sock: socket.socket | None = None
        self.control_url = ""
        self.apns = ApnsSimulator(self._ca, record_payloads=record_payloads)
        # token_uri is known once the control port is bound (start()).
        self.fcm = FcmSimulator(TokenIssuer(), "", record_payloads=record_payloads)
        self._apns_server = H2Server(
            self.apns, self._ca.server_context(request_client_cert=True), name="APNs"
        )
        # Google's endpoint speaks HTTP/2 and HTTP/1.1 (requests, pyfcm); Apple's only HTTP/2.
        self._fcm_server = H2Server(
            self.fcm,
            self._ca.server_context(request_client_cert=False, protocols=("h2", "http/1.1")),
            name="FCM",
            http1=True,
        )
        self._control: ControlServer | None = None

    @property
    def ca_file(self) -> Path:
        return self._ca.ca_file

    @property
    def apns_endpoint(self) -> str:
        return f"{self.host}:{self._apns_server.port}"

    @property
    def fcm_endpoint(self) -> str:
        return f"https://{self.host}:{self._fcm_server.port}"

    def endpoints(self) -> dict[str, Any]:
        return {
            "apns_endpoint": self.apns_endpoint,
            "fcm_endpoint": self.fcm_endpoint,
            "ca_file": str(self.ca_file),
            "control_url": self.control_url,
            "pid": os.getpid(),
        }

    async def start(self) -> None:
        if self._scenario_file is not None:
            scenarios = load_scenario_file(self._scenario_file)
            self.apns.set_scenario(scenarios["apns"])
            self.fcm.set_scenario(scenarios["fcm"])
        apns_port, fcm_port, control_port = self._ports
        self._control_sock = socket.create_server((self.host, control_port), backlog=256)
        self.control_url = f"http://{self.host}:{self._control_sock.getsockname()[1]}"
        self.fcm.token_uri = f"{self.control_url}/token"
        await self._apns_server.start(self.host, apns_port)
        await self._fcm_server.start(self.host, fcm_port)
        self._control = ControlServer(
            create_app(self, asyncio.get_running_loop()), self._control_sock
        )
        await self._control.start()
        logger.info("simulators control API on %s", self.control_url)

    async def stop(self) -> None:
        await self._apns_server.stop()
        await self._fcm_server.stop()
        if self._control is not None:
            await self._control.stop()
            self._control = None
        elif self._control_sock is not None:
            self._control_sock.close()
        self._control_sock = None

    async def __aenter__(self) -> Simulators:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def reset(self) -> None:
        """Clear records, scenarios and unregistered tokens of both; keep keys and accounts."""
        self.apns.reset()
        self.fcm.reset()

    def stats(self) -> dict[str, Any]:
        return {"apns": self.apns.stats(), "fcm": self.fcm.stats()}


def _endpoints_path(home: Path) -> Path:
    return Path(home) / "sim" / ENDPOINTS_FILE


def write_endpoints(home: Path, endpoints: dict[str, Any]) -> Path:
    """Publish the endpoints atomically: a reader sees the old file or the whole new one."""
    path = _endpoints_path(home)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{ENDPOINTS_FILE}.")
    with os.fdopen(fd, "w") as f:
        json.dump(endpoints, f, indent=2)
    os.replace(tmp, path)
    return path


def read_endpoints(home: Path) -> dict[str, Any]:
    """The endpoints of the simulators serving ``home``; FileNotFoundError if none is."""
    data: dict[str, Any] = json.loads(_endpoints_path(home).read_text())
    return data


@dataclass(frozen=True)
class SimulatorEndpoints:
    """Where a home's simulators listen, as ``endpoints.json`` says."""

    apns_endpoint: str
    fcm_endpoint: str
    ca_file: Path
    control_url: str
    pid: int
    started_here: bool = False  # by this process, for as long as its context lasts

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimulatorEndpoints:
        return cls(
            apns_endpoint=str(data["apns_endpoint"]),
            fcm_endpoint=str(data["fcm_endpoint"]),
            ca_file=Path(str(data["ca_file"])),
            control_url=str(data["control_url"]),
            pid=int(data["pid"]),
        )


def running_simulators(home: Path) -> SimulatorEndpoints | None:
    """The simulators ``endpoints.json`` names if they still serve: their process runs and
    their control API answers. A stale file (a killed process) gives None."""
    try:
        endpoints = SimulatorEndpoints.from_json(read_endpoints(home))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        if psutil.Process(endpoints.pid).status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    try:
        answer = httpx.get(f"{endpoints.control_url}/healthz", timeout=2.0)
    except httpx.HTTPError:
        return None
    return endpoints if answer.status_code == 200 else None


@contextlib.asynccontextmanager
async def _sim_lock(home: Path) -> AsyncIterator[None]:
    """Exclusive across processes while simulators are found or started for ``home``."""
    import fcntl  # POSIX locks, imported here: the module stays importable elsewhere

    directory = Path(home) / "sim"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_FILE).open("a") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another process has held {directory / LOCK_FILE} for "
                        f"{LOCK_TIMEOUT_S:.0f} s while starting simulators"
                    ) from None
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def shared_simulators(
    home: Path, host: str = "127.0.0.1"
) -> AsyncIterator[SimulatorEndpoints]:
    """The home's running simulators, or simulators served by this process while the
    context lasts (published in ``endpoints.json`` for other processes, withdrawn after)."""
    home = Path(home)
    async with contextlib.AsyncExitStack() as stack:
        async with _sim_lock(home):
            running = await asyncio.to_thread(running_simulators, home)
            if running is None:
                sims = await stack.enter_async_context(Simulators(home, host))
                write_endpoints(home, sims.endpoints())
                stack.callback(_withdraw_endpoints, home)
                running = replace(SimulatorEndpoints.from_json(sims.endpoints()), started_here=True)
        yield running


def _withdraw_endpoints(home: Path) -> None:
    """Remove ``endpoints.json`` if it names this process' simulators."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        if read_endpoints(home).get("pid") == os.getpid():
            _endpoints_path(home).unlink()


async def serve(
    home: Path,
    host: str = "127.0.0.1",
    apns_port: int = 0,
    fcm_port: int = 0,
    control_port: int = 0,
    scenario_file: Path | None = None,
    ready: asyncio.Event | None = None,
    *,
    record_payloads: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation); publish endpoints.json once listening.

    ``record_payloads=False`` keeps records without payloads and headers (benchmarks).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with _sim_lock(home):
                running = await asyncio.to_thread(running_simulators, home)
                if running is not None:
                    raise SimulatorsRunning(Path(home), running)
                sims = await stack.enter_async_context(
                    Simulators(
                        Path(home),
                        host,
                        apns_port,
                        fcm_port,
                        control_port,
                        scenario_file,
                        record_payloads=record_payloads,
                    )
                )
                write_endpoints(home, sims.endpoints())
            logger.info(
                "simulators ready: APNs %s, FCM %s, control %s",
                sims.apns_endpoint,
                sims.fcm_endpoint,
                sims.control_url,
            )
            if ready is not None:
                ready.set()
            await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        _withdraw_endpoints(home)
