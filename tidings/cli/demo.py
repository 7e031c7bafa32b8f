"""`tidings demo`: the whole product on one laptop, in about a minute.

It starts the embedded stack (Temporal's dev server, the APNs and FCM simulators, the API and
a worker), seeds a demo app whose iOS and Android devices include tokens the simulators report
as unregistered, runs the welcome journey, lets simulated devices open a share of the pushes
through the API and follow the tracked link of some of those (a click, recorded by the
redirect), and prints the funnel from the store.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.api.app import create_app
from tidings.api.keys import admin_key
from tidings.journeys.validation import load_definition
from tidings.runs.start import start_run
from tidings.settings import Settings
from tidings.sim import Simulators
from tidings.stack import running, serving_api
from tidings.store.migrate import upgrade
from tidings.store.reports import Funnel, run_funnel
from tidings.temporal.client import connect
from tidings.temporal.devserver import free_port, temporal_server
from tidings.worker.resources import build_worker, worker_resources

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
    async with Simulators(home=settings.home) as sims:
        settings = settings.model_copy(
            update={
                "apns_endpoint": sims.apns_endpoint,
                "fcm_endpoint": sims.fcm_endpoint,
                "provider_ca_file": sims.ca_file,
                "api_port": free_port(),
            }
        )
        # the pushes' links go through the embedded API, which records the click
        settings = settings.model_copy(
            update={"public_url": f"http://{settings.api_host}:{settings.api_port}"}
        )
        console.print(Text(f"· APNs simulator at {sims.apns_endpoint}, FCM at {sims.fcm_endpoint}"))
        async with temporal_server(settings) as address:
            console.print(Text(f"· Temporal at {address}"))
            client = await connect(address)
            async with (
                worker_resources(settings) as resources,
                running(build_worker(client, settings, resources)),
                serving_api(
                    create_app(settings, resources.db), settings.api_host, settings.api_port
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
                    opened, clicked = await _open_some(http, sims, options, rng)
                    console.print(
                        f"· simulated devices opened {opened} pushes through the API and "
                        f"followed {clicked} tracked links"
                    )
                async with resources.db.read() as session:
                    funnel = await run_funnel(session, started.run_id)
    _print_funnel(console, funnel)
    return funnel


async def _seed(
    http: httpx.AsyncClient, sims: Simulators, options: DemoOptions, rng: random.Random
) -> tuple[list[str], int]:
    signing_key = sims.apns.create_signing_key(team_id=TEAM_ID, key_id=KEY_ID, topics=[BUNDLE_ID])
    service_account = sims.fcm.create_service_account(project_id=FCM_PROJECT)
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
    for index in range(options.profiles):
        profile_id = f"demo-{index:05d}"
        profile_ids.append(profile_id)
        attributes = {"first_name": rng.choice(FIRST_NAMES), "plan": rng.choice(PLANS)}
        _ok(await http.put(f"/v1/profiles/{profile_id}", json={"attributes": attributes}))
        # about 1.5 devices per profile, iOS and Android mixed
        devices = 1 if rng.random() < 0.5 else 2
        for device in range(devices):
            provider = "apns" if rng.random() < 0.5 else "fcm"
            token = demo_token(index, device, provider)
            body = {"profile_id": profile_id, "provider": provider, "token": token}
            _ok(await http.post(f"/v1/apps/{APP_ID}/devices", json=body))
            if rng.random() < options.unregistered_share:
                unregistered[provider].append(token)
    # The app was uninstalled after it registered: the providers now answer "gone".
    sims.apns.mark_unregistered(unregistered["apns"])
    sims.fcm.mark_unregistered(unregistered["fcm"])
    return profile_ids, len(unregistered["apns"]) + len(unregistered["fcm"])


async def _open_some(
    http: httpx.AsyncClient, sims: Simulators, options: DemoOptions, rng: random.Random
) -> tuple[int, int]:
    """Open a share of the pushes the simulators accepted, as the app reports it, and follow
    the tracked link of a share of those, as the user's tap does: (opened, clicked)."""
    opened = clicked = 0
    for record in [*sims.apns.accepted(), *sims.fcm.accepted()]:
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
