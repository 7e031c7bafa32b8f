"""Shared fixtures: one set of simulators for the session, reset before every test."""

from __future__ import annotations

import hashlib
import itertools
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import firebase_admin
import jwt
import pytest
from firebase_admin import App, credentials, messaging

from tests.sim.h2client import RawH2Client
from tidings.push.adapters import (
    CertificateAuthPool,
    SharedProviderToken,
    TokenAuthPool,
    configure_fcm_app,
)
from tidings.sim import Simulators

TOPIC = "com.example.app"
TOKEN = "ab" * 32


def fcm_token(name: str) -> str:
    """A well-formed FCM registration token, ``<name>:APA91b<40 hex>``, told apart by name."""
    return f"{name}:APA91b{hashlib.sha256(name.encode()).hexdigest()[:40]}"


FCM_TOKEN = fcm_token("fcm-token-1")
_ids = itertools.count(1)

KeyFactory = Callable[..., "ApnsKey"]
PoolFactory = Callable[..., TokenAuthPool]
CertPoolFactory = Callable[..., CertificateAuthPool]
RawConnect = Callable[..., Awaitable[RawH2Client]]
AppFactory = Callable[..., App]


@dataclass(frozen=True)
class ApnsKey:
    key_pem: str
    key_id: str
    team_id: str

    def jwt(self, *, iat: int | None = None, kid: str | None = None, iss: str | None = None) -> str:
        """A provider token; without arguments the key's one token, minted once, as a client
        reuses its JWT (a connection presenting a newer one too soon gets 429)."""
        if iat is None and kid is None and iss is None:
            return self.current_jwt
        return self._mint(int(time.time()) if iat is None else iat, kid, iss)

    @cached_property
    def current_jwt(self) -> str:
        return self._mint(int(time.time()), None, None)

    def _mint(self, iat: int, kid: str | None, iss: str | None) -> str:
        claims = {"iss": iss or self.team_id, "iat": iat}
        return jwt.encode(
            claims, self.key_pem, algorithm="ES256", headers={"kid": kid or self.key_id}
        )


class FixedProviderToken(SharedProviderToken):
    """A provider token that always presents one JWT, issued ``age_s`` seconds ago."""

    def __init__(self, key: ApnsKey, age_s: int) -> None:
        super().__init__(key.key_pem, key.key_id, key.team_id)
        self._fixed = f"bearer {key.jwt(iat=int(time.time()) - age_s)}"

    def get_header(self) -> str:
        return self._fixed


def unique_id(prefix: str) -> str:
    """A 10-character id, unique in the session (team ids and key ids are 10 characters)."""
    return f"{prefix}{next(_ids):0{10 - len(prefix)}d}"


@pytest.fixture(scope="session")
async def sims(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Simulators]:
    async with Simulators(home=tmp_path_factory.mktemp("home")) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_simulators(sims: Simulators) -> None:
    sims.reset()


@pytest.fixture
def ssl_ctx(sims: Simulators) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sims.ca_file))


@pytest.fixture
def apns_key(sims: Simulators) -> Callable[..., ApnsKey]:
    def make(topics: list[str] | None = None, team_id: str | None = None) -> ApnsKey:
        key_id = unique_id("K")
        team = team_id or unique_id("T")
        pem = sims.apns.create_signing_key(team_id=team, key_id=key_id, topics=topics or [TOPIC])
        return ApnsKey(pem, key_id, team)

    return make


@pytest.fixture
def apns_pool(sims: Simulators) -> Iterator[Callable[..., TokenAuthPool]]:
    """Builds aioapns pools exactly as tidings does; closes them after the test."""
    pools: list[Any] = []
    host, port = sims.apns_endpoint.rsplit(":", 1)

    def make(
        key: ApnsKey,
        *,
        topic: str = TOPIC,
        sandbox: bool = False,
        auth: SharedProviderToken | None = None,
    ) -> TokenAuthPool:
        pool = TokenAuthPool(
            auth=auth or SharedProviderToken(key.key_pem, key.key_id, key.team_id),
            route=(host, int(port)),
            topic=topic,
            max_connections=1,
            max_connection_attempts=1,
            use_sandbox=sandbox,
            ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def cert_pool(sims: Simulators, tmp_path: Path) -> Iterator[Callable[..., CertificateAuthPool]]:
    pools: list[Any] = []
    host, port = sims.apns_endpoint.rsplit(":", 1)

    def make(topics: list[str], topic: str | None = None) -> CertificateAuthPool:
        cert_pem, key_pem = sims.apns.create_client_certificate(topics=topics)
        cert_file = tmp_path / f"{uuid.uuid4()}.pem"
        cert_file.write_text(cert_pem + key_pem)
        pool = CertificateAuthPool(
            route=(host, int(port)),
            cert_file=str(cert_file),
            topic=topic,
            ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
            max_connections=1,
            max_connection_attempts=1,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
async def raw_apns(sims: Simulators) -> AsyncIterator[Callable[..., Any]]:
    """Opens bare HTTP/2 connections to the APNs simulator."""
    clients: list[RawH2Client] = []
    host, port = sims.apns_endpoint.rsplit(":", 1)

    async def connect(
        server_name: str = "api.push.apple.com",
        cert: tuple[str, str] | None = None,
        initial_window: int | None = None,
    ) -> RawH2Client:
        ctx = ssl.create_default_context(cafile=str(sims.ca_file))
        if cert is not None:
            path = sims.home / f"{uuid.uuid4()}.pem"
            path.write_text(cert[0] + cert[1])
            ctx.load_cert_chain(path)
        client = RawH2Client(host, int(port), ctx, server_name, initial_window)
        await client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


@pytest.fixture(scope="session")
def service_accounts() -> dict[str, dict[str, str]]:
    """Service accounts by project, reused: RSA key generation is the slow part of a test."""
    return {}


@pytest.fixture(scope="session")
async def _shared_fcm_apps() -> AsyncIterator[dict[str, App]]:
    apps: dict[str, App] = {}
    yield apps
    for app in apps.values():
        await _close_fcm_app(app)


async def _close_fcm_app(app: App) -> None:
    # delete_app() would asyncio.run() the client's close inside this running loop.
    await messaging._get_messaging_service(app)._async_client._async_client.aclose()


@pytest.fixture
async def fcm_app(
    sims: Simulators,
    service_accounts: dict[str, dict[str, str]],
    _shared_fcm_apps: dict[str, App],
) -> AsyncIterator[Callable[..., App]]:
    """firebase-admin apps configured exactly as tidings does.

    Apps are shared across tests per project (building one costs ~0.25 s); ``fresh=True``
    gives a new one, for tests that change it or count its token requests.
    """
    apps: list[App] = []

    def make(
        project_id: str = "demo-project", *, fresh: bool = False, timeout_s: float = 5.0
    ) -> App:
        if not fresh and project_id in _shared_fcm_apps:
            return _shared_fcm_apps[project_id]
        if project_id not in service_accounts:
            service_accounts[project_id] = sims.fcm.create_service_account(project_id=project_id)
        app = firebase_admin.initialize_app(
            credentials.Certificate(service_accounts[project_id]), name=f"sim-test-{uuid.uuid4()}"
        )
        configure_fcm_app(
            app,
            endpoint=sims.fcm_endpoint,
            ssl_context=ssl.create_default_context(cafile=str(sims.ca_file)),
            max_connections=2,
            timeout_s=timeout_s,
        )
        if fresh:
            apps.append(app)
        else:
            _shared_fcm_apps[project_id] = app
        return app

    yield make
    for app in apps:
        await _close_fcm_app(app)
