"""`tidings demo`: the whole product on one laptop, in about a minute.

It starts the embedded stack (Temporal's dev server, the APNs and FCM simulators, the API and
a worker), seeds a demo app whose iOS and Android devices include tokens the simulators report
as unregistered, runs the welcome journey, lets simulated devices open a share of the pushes
through the API and follow the tracked link of some of those (a click, recorded by the
redirect), prints the funnel from the store, and keeps serving the console (with the demo's
run to look at) until Ctrl-C, unless told to exit at once (``--exit``).

A Temporal server or simulators already serving the home (``tidings up``, ``tidings sim``, a
worker) are reused and left running; what the demo had to start it stops when it ends, so a
first try leaves nothing behind. Its worker serves a task queue of its own: a worker already
running on the shared server, configured for other providers, never takes the demo's pushes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlmodel import col, select
from temporalio.client import Client

from tidings.api.app import create_app
from tidings.api.keys import admin_key
from tidings.console.temporal import provide_client
from tidings.journeys.validation import load_definition
from tidings.runs.start import start_run
from tidings.settings import Settings
from tidings.sim import SimRecord, SimulatorClient, shared_simulators
from tidings.stack import running, serving_api
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.models import Delivery
from tidings.store.reports import Funnel, run_funnel
from tidings.temporal.client import connect
from tidings.temporal.devserver import free_port, temporal_endpoint
from tidings.worker.resources import QUEUE_ROLES, build_workers, worker_resources

APP_ID = "demo"
BUNDLE_ID = "com.example.tidings.demo"
TEAM_ID = "DEMOTEAM01"
KEY_ID = "DEMOKEY001"
FCM_PROJECT = "tidings-demo"
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
PLANS = ["free", "plus", "pro"]


@dataclass(frozen=True)
class DemoOptions:
    profiles: int = 200
    unregistered_share: float = 0.08
    open_share: float = 0.35
    click_share: float = 0.4  # of the opened pushes, those whose link is followed
    seed: int = 7
    # keep serving the console (and the API) after the funnel, until Ctrl-C
    serve: bool = True


def demo_token(profile_index: int, device: int, provider: str) -> str:
    digest = hashlib.sha256(f"demo/{profile_index}/{device}".encode()).hexdigest()
    if provider == "apns":
        return digest  # 64 hex characters, like today's APNs tokens
    return f"demo-fcm-{digest[:22]}:APA91b{digest[22:]}"


async def run_demo(settings: Settings, options: DemoOptions, console: Console) -> Funnel:
    rng = random.Random(options.seed)
    settings.home.mkdir(parents=True, exist_ok=True)
    console.print(Text.assemble(("tidings demo", "bold"), f" · state in {settings.home.resolve()}"))
    upgrade(settings.resolved_database_url)
    async with shared_simulators(settings.home) as found:
        settings = settings.model_copy(
            update={
                "apns_endpoint": found.apns_endpoint,
                "fcm_endpoint": found.fcm_endpoint,
                "provider_ca_file": found.ca_file,
                "api_port": free_port(),
                "task_queue": f"{settings.task_queue}-demo",
            }
        )
        # the pushes' links go through the embedded API, which records the click
        settings = settings.model_copy(
            update={"public_url": f"http://{settings.api_host}:{settings.api_port}"}
        )
        console.print(
            Text(
                f"· APNs simulator at {found.apns_endpoint}, FCM at {found.fcm_endpoint}"
                + _reused(found.started_here, found.pid)
            )
        )
        async with (
            temporal_endpoint(settings, stop_if_started=True) as temporal,
            SimulatorClient(found.control_url) as sims,
        ):
            ui = f", Web UI at {temporal.ui_address}" if temporal.ui_address else ""
            reused = "" if not temporal.embedded else _reused(temporal.started_here)
            console.print(Text(f"· Temporal at {temporal.address}{ui}{reused}"))
            client = await connect(temporal.address)
            async with (
                worker_resources(settings) as resources,
                running(*build_workers(client, settings, resources, QUEUE_ROLES)),
                serving_api(
                    _api_with_console(settings, resources.db, client),
                    settings.api_host,
                    settings.api_port,
                ) as api,
            ):
                console.print(Text(f"· API at {api} (OpenAPI at {api}/docs)"))
                headers = {"Authorization": f"Bearer {admin_key(settings)}"}
                async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
                    profile_ids, gone = await _seed(http, sims, options, rng)
                    console.print(
                        f"· seeded app {APP_ID!r}: {len(profile_ids)} profiles, "
                        f"{gone} tokens the simulators will report as unregistered"
                    )
                    journey = load_definition(_example("welcome.yaml"))
                    started = await start_run(client, resources.db, settings, journey)
                    console.print(Text(f"· started run {started.run_id}"))
                    result = await started.handle.result()
                    if result.stopped:
                        stopped = Text.assemble(("sends stopped:", "red"), f" {result.stopped}")
                        console.print(stopped)
                    pushed = await _pushes_of(resources.db, sims, started.run_id)
                    opened, clicked = await _open_some(http, pushed, options, rng)
                    console.print(
                        f"· simulated devices opened {opened} pushes through the API and "
                        f"followed {clicked} tracked links"
                    )
                async with resources.db.read() as session:
                    funnel = await run_funnel(session, started.run_id)
                _print_funnel(console, funnel)
                if options.serve:
                    await _serve_console(console, settings, api, started.run_id)
    return funnel


def _api_with_console(settings: Settings, db: Database, client: Client) -> FastAPI:
    app = create_app(settings, db)
    provide_client(app, client)  # the console starts and cancels runs on the demo's server
    return app


async def _serve_console(console: Console, settings: Settings, api: str, run_id: str) -> None:
    """Keep the stack up for the console until Ctrl-C (which cancels this wait)."""
    key_file = settings.home.resolve() / "admin.key"
    where = "TIDINGS_ADMIN_KEY" if settings.admin_key else str(key_file)
    console.print(
        Text.assemble(
            ("console: ", "bold"),
            f"{api}/console/runs/{quote(run_id)}",
            f" (log in with the admin key, in {where}); Ctrl-C stops the demo",
        )
    )
    await asyncio.Event().wait()


def _reused(started_here: bool, pid: int | None = None) -> str:
    if started_here:
        return ""
    return f" (already running{f', pid {pid}' if pid else ''}: reused, left running)"


async def _seed(
    http: httpx.AsyncClient, sims: SimulatorClient, options: DemoOptions, rng: random.Random
) -> tuple[list[str], int]:
    signing_key = await sims.create_apns_key(TEAM_ID, KEY_ID, [BUNDLE_ID])
    service_account = await sims.create_fcm_service_account(FCM_PROJECT)
    credentials = {
        "apns": {
            "auth": "token",
            "team_id": TEAM_ID,
            "key_id": KEY_ID,
            "bundle_id": BUNDLE_ID,
            "environment": "production",
            "signing_key": signing_key,
        },
        "fcm": {"service_account": _json(service_account)},
    }
    existing = await http.get(f"/v1/apps/{APP_ID}")
    if existing.status_code == 404:
        body = {"id": APP_ID, "name": "Demo app", "description": "seeded by tidings demo"}
        _ok(await http.post("/v1/apps", json=body | credentials))
    else:
        _ok(await http.patch(f"/v1/apps/{APP_ID}", json=credentials))
    profile_ids = []
    unregistered: dict[str, list[str]] = {"apns": [], "fcm": []}
    rows = []
    for index in range(options.profiles):
        profile_id = f"demo-{index:05d}"
        profile_ids.append(profile_id)
        attributes = {"first_name": rng.choice(FIRST_NAMES), "plan": rng.choice(PLANS)}
        # about 1.5 devices per profile, iOS and Android mixed
        devices = []
        for device in range(1 if rng.random() < 0.5 else 2):
            provider = "apns" if rng.random() < 0.5 else "fcm"
            token = demo_token(index, device, provider)
            devices.append({"app": APP_ID, "provider": provider, "token": token})
            if rng.random() < options.unregistered_share:
                unregistered[provider].append(token)
        rows.append({"id": profile_id, "attributes": attributes, "devices": devices})
    # every profile and device in one bulk import, not a request each
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    imported = _ok(
        await http.post(
            "/v1/profiles/import",
            content=lines.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
    )
    if imported.json()["failed"]:
        raise RuntimeError(f"the demo's profiles were not all imported: {imported.text}")
    # The app was uninstalled after it registered: the providers now answer "gone".
    await sims.mark_unregistered("apns", unregistered["apns"])
    await sims.mark_unregistered("fcm", unregistered["fcm"])
    return profile_ids, len(unregistered["apns"]) + len(unregistered["fcm"])


async def _pushes_of(db: Database, sims: SimulatorClient, run_id: str) -> list[SimRecord]:
    """The pushes of this run the simulators accepted (simulators shared with other runs,
    or an earlier demo, hold those runs' pushes too)."""
    async with db.read() as session:
        rows = await session.exec(
            select(col(Delivery.tracking_id)).where(col(Delivery.run_id) == run_id)
        )
        ours = set(rows.all())
    accepted = [*await sims.accepted("apns"), *await sims.accepted("fcm")]
    return [record for record in accepted if record.tracking_id in ours]


async def _open_some(
    http: httpx.AsyncClient, pushed: list[SimRecord], options: DemoOptions, rng: random.Random
) -> tuple[int, int]:
    """Open a share of the pushes, as the app reports it, and follow the tracked link of a
    share of those, as the user's tap does: (opened, clicked)."""
    opened = clicked = 0
    for record in pushed:
        if not record.tracking_id or rng.random() >= options.open_share:
            continue
        body = {"tracking_id": record.tracking_id, "kind": "opened", "device_token": record.token}
        _ok(await http.post("/v1/interactions", json=body))
        opened += 1
        link = _pushed_link(record.payload)
        if link and rng.random() < options.click_share:
            # a device's browser: no API key, and the redirect is the answer, not followed
            async with httpx.AsyncClient(timeout=30) as browser:
                answer = await browser.get(link)
            if answer.status_code != 302:
                raise RuntimeError(f"the tracked link answered {answer.status_code}")
            clicked += 1
    return opened, clicked


def _pushed_link(payload: dict[str, object] | None) -> str | None:
    """The ``link`` of a push as the device got it: top level for APNs, in the message's
    data for FCM."""
    if payload is None:
        return None
    data = payload.get("data")
    link = data.get("link") if isinstance(data, dict) else payload.get("link")
    return link if isinstance(link, str) else None


def _print_funnel(console: Console, funnel: Funnel) -> None:
    table = Table(title="Welcome journey: funnel", show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("count", justify="right")
    for label, value in (
        ("profiles targeted", funnel.profiles_targeted),
        ("pushes sent", funnel.pushes_sent),
        ("delivered", funnel.delivered),
        ("tokens invalidated", funnel.tokens_invalidated),
        ("opened", funnel.opened),
        ("clicked", funnel.clicked),
    ):
        table.add_row(label, str(value))
    console.print(table)
    console.print(Text(funnel.opened_rule, style="dim"))
    if funnel.not_sent_reasons:
        reasons = ", ".join(f"{r}: {n}" for r, n in funnel.not_sent_reasons.items())
        console.print(Text(f"not sent: {reasons}"))


def _example(name: str) -> Path:
    return Path(str(resources.files("tidings.journeys") / "examples" / name))


def _json(value: object) -> str:
    return json.dumps(value)


def _ok(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response
