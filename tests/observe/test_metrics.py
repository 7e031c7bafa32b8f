"""A small broadcast on the real stack, then both metrics endpoints scraped: the push
counters equal the ledger's counts, and Temporal's SDK metrics are served."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func
from sqlmodel import col, select
from temporalio.client import Client

from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.observe.health import readiness
from tidings.observe.sampler import sample_once
from tidings.observe.server import serving_observe
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Delivery
from tidings.temporal.client import connect, metrics_runtime
from tidings.temporal.devserver import free_port

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "tidings.json"
METRIC_NAME = re.compile(r"\b((?:tidings|temporal)_[a-z0-9_]+)")


def dashboard_metrics() -> set[str]:
    """Every tidings and Temporal series name the dashboard's queries read."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries.append(dashboard["templating"]["list"][1]["definition"])
    return {name for query in queries for name in METRIC_NAME.findall(query)}


SERIES_OF = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}


def exported(*texts: str) -> set[str]:
    """The series names the scrapes serve or declare (a labelled metric is declared, with its
    type, before its first sample)."""
    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
            names.update(family.name + suffix for suffix in SERIES_OF.get(family.type, ("",)))
    return names


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def fcm_token(n: int) -> str:
    return f"fcm-token-{n}:APA91b{n:040d}"


def journey(app: str) -> dict[str, object]:
    return {
        "id": f"metrics-{app}",
        "name": "Metrics",
        "app": app,
        "nodes": [
            {"id": "hi", "type": "push", "content": {"title": "Hi", "body": "b"}, "next": "end"},
            {"id": "end", "type": "exit"},
        ],
    }


async def test_push_counters_equal_the_ledger_and_both_endpoints_serve(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    app = f"m{uuid.uuid4().hex[:10]}"
    sdk_address = f"127.0.0.1:{free_port()}"
    # the worker's client on a runtime that exports the SDK's metrics, as run_worker builds it
    client = await connect(
        temporal_client.service_client.config.target_host, runtime=metrics_runtime(sdk_address)
    )
    client = Client(**(client.config() | {"namespace": temporal_client.namespace}))
    settings = make_settings(tmp_path, database_url, sims, cohort_size=4)
    team, key, project = unique_ids()
    async with real_stack(settings, client) as stack:
        body = {"id": app, "name": "Metrics"} | app_credentials(
            sims, team_id=team, key_id=key, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201
        gone = {f"{3:064x}", fcm_token(4)}
        for n in range(10):
            await stack.http.put(f"/v1/profiles/q{n}", json={"attributes": {}})
            if n == 9:
                continue  # no device: a not-sent row
            token, provider = (f"{n:064x}", "apns") if n % 2 else (fcm_token(n), "fcm")
            answer = await stack.http.post(
                f"/v1/apps/{app}/devices",
                json={
                    "profile_id": f"q{n}",
                    "create_profile": True,
                    "provider": provider,
                    "token": token,
                },
            )
            assert answer.status_code == 200, answer.text
        sims.apns.mark_unregistered([t for t in gone if not t.startswith("fcm")])
        sims.fcm.mark_unregistered([t for t in gone if t.startswith("fcm")])

        started = await start_run(
            client,
            stack.db,
            settings,
            parse_definition(journey(app)),
            profile_ids=[f"q{n}" for n in range(10)],
        )
        await started.handle.result()

        async with stack.db.read() as session:
            rows = await session.exec(
                select(Delivery.provider, Delivery.status, func.count())
                .where(col(Delivery.app_id) == app)
                .group_by(col(Delivery.provider), col(Delivery.status))
            )
            ledger = Counter({(p or "none", str(s)): n for p, s, n in rows.all()})
        await sample_once(stack.db, client)

        async def ready() -> object:
            return await readiness(stack.db, client)

        async with (
            serving_observe("127.0.0.1:0", ready) as port,  # type: ignore[arg-type]
            httpx.AsyncClient() as http,
        ):
            worker_text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            sdk_text = (await http.get(f"http://{sdk_address}/metrics")).text
        api_text = (await stack.http.get("/metrics")).text

    counted = Counter(
        {
            (labels["provider"], labels["outcome"]): int(value)
            for labels, value in samples(worker_text, "tidings_pushes_total")
            if labels["app"] == app
        }
    )
    assert counted == ledger
    assert ledger[("apns", "token_gone")] == 1
    assert ledger[("fcm", "token_gone")] == 1
    assert ledger[("none", "not_sent")] == 1
    assert sum(ledger.values()) == 10

    invalidated = samples(worker_text, "tidings_token_invalidations_total")
    assert {labels["provider"] for labels, value in invalidated if value} >= {"apns", "fcm"}
    answered = {
        (labels["provider"], labels["outcome"])
        for labels, value in samples(worker_text, "tidings_provider_answer_seconds_count")
        if value
    }
    assert {("apns", "delivered"), ("fcm", "delivered"), ("fcm", "token_gone")} <= answered
    for gauge in ("tidings_ledger_open_rows", "tidings_runs_in_flight"):
        assert samples(worker_text, gauge), gauge
    backlog = {
        labels["kind"] for labels, _ in samples(worker_text, "tidings_forwarder_lag_seconds")
    }
    assert backlog == {"interactions", "custom_events", "webhooks"}

    # the SDK's own metrics, schedule-to-start latency among them
    assert samples(sdk_text, "temporal_workflow_task_schedule_to_start_latency_count") or any(
        name.startswith("temporal_workflow_task_schedule_to_start_latency")
        for name in {f.name for f in text_string_to_metric_families(sdk_text)}
    )
    # every series the Grafana dashboard queries is one these processes export
    missing = dashboard_metrics() - exported(worker_text, sdk_text, api_text)
    assert not missing, missing
    # the API counts requests by route template, never by raw path
    routes = {
        (labels["route"], labels["status"])
        for labels, _ in samples(api_text, "tidings_api_requests_total")
    }
    assert ("/v1/apps/{app_id}/devices", "200") in routes
    assert not any(app in route for route, _ in routes)
