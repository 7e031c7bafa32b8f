"""Journeys and runs over the API on the real stack (Temporal's dev server, a worker, the
simulators), on SQLite and PostgreSQL: a journey saved as YAML names its audience, a run of
it is started, watched, reported and listed push by push, and the CLI's `--json` gives the
same numbers as the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from typer.testing import CliRunner

from tests.harness import (
    ADMIN_KEY,
    Stack,
    app_credentials,
    make_settings,
    real_stack,
    unique_ids,
)
from tidings.cli.app import app as cli
from tidings.sim import Simulators
from tidings.store.reports import node_funnels, run_funnel

APP = "spring-app"
JOURNEY = f"""
id: spring
name: Spring sale
app: {APP}
audience:
  where: ["plan=pro"]
goal:
  event: purchased
nodes:
  - id: split
    type: random_split
    branches:
      - {{percent: 50, next: a}}
      - {{percent: 50, next: b}}
  - id: a
    type: push
    content: {{title: "Sale A", body: "a"}}
  - id: b
    type: push
    content: {{title: "Sale B", body: "b"}}
"""
YAML = {"Content-Type": "application/yaml"}


def apns_token(n: int) -> str:
    return f"{n:064x}"


def cli_json(env: dict[str, str], *args: str) -> Any:
    """A CLI command's `--json` output (run in a thread: the command runs its own loop)."""
    result = CliRunner().invoke(cli, [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_a_run_over_the_api_and_the_cli_gives_the_same_numbers(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    settings = make_settings(tmp_path, database_url, sims)
    team, key, project = unique_ids()
    async with real_stack(settings, temporal_client) as stack:
        http = stack.http
        body = {"id": APP, "name": "Spring"} | app_credentials(
            sims, team_id=team, key_id=key, project_id=project
        )
        assert (await http.post("/v1/apps", json=body)).status_code == 201
        for n in range(10):
            plan = "pro" if n % 2 == 0 else "free"
            put = await http.put(f"/v1/profiles/p{n}", json={"attributes": {"plan": plan}})
            assert put.status_code == 200, put.text
            device = {
                "profile_id": f"p{n}",
                "create_profile": True,
                "provider": "apns",
                "token": apns_token(n),
            }
            assert (await http.post(f"/v1/apps/{APP}/devices", json=device)).status_code == 200
        sims.apns.mark_unregistered([apns_token(2)])

        saved = await http.post("/v1/journeys", content=JOURNEY, headers=YAML)
        assert saved.status_code == 201, saved.text
        assert saved.json() == {"id": "spring", "version": 1, "created": True}

        # a filter no profile matches is an error, and nothing starts
        nobody = await http.post(
            "/v1/runs", json={"journey_id": "spring", "audience": {"where": ["plan=gold"]}}
        )
        assert nobody.status_code == 422, nobody.text
        assert nobody.json()["error"]["code"] == "cannot_start"
        assert "no profile matches" in nobody.json()["error"]["message"]
        assert (await http.get("/v1/runs")).json()["items"] == []

        # no audience given: the journey's own (plan=pro: p0, p2, p4, p6, p8)
        started = await http.post("/v1/runs", json={"journey_id": "spring"})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert started.json()["status"] == "running"
        assert started.json()["entry"]["where"] == [
            {"attribute": "plan", "op": "eq", "value": "pro"}
        ]
        await temporal_client.get_workflow_handle(run_id).result()

        progress = (await http.get(f"/v1/runs/{run_id}")).json()
        assert progress["status"] == "completed"
        assert progress["counts"]["profiles"] == 5
        assert progress["still_starting"] is False

        # the pushes one by one, two a page
        pushes: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await http.get(f"/v1/runs/{run_id}/pushes", params=params)).json()
            pushes += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(p["profile_id"] for p in pushes) == ["p0", "p2", "p4", "p6", "p8"]
        assert len({p["tracking_id"] for p in pushes}) == 5
        outcomes = {p["profile_id"]: p["outcome"] for p in pushes}
        assert outcomes["p2"] == "token_gone"
        assert [outcomes[p] for p in ("p0", "p4", "p6", "p8")] == ["delivered"] * 4
        gone = await http.get(f"/v1/runs/{run_id}/pushes", params={"outcome": "token_gone"})
        assert [p["profile_id"] for p in gone.json()["items"]] == ["p2"]

        opened = next(p for p in pushes if p["profile_id"] == "p0")
        report_open = {"tracking_id": opened["tracking_id"], "kind": "opened"}
        assert (await http.post("/v1/interactions", json=report_open)).status_code in (200, 202)

        report = (await http.get(f"/v1/runs/{run_id}/report")).json()
        async with stack.db.read() as session:
            funnel = await run_funnel(session, run_id)
            by_node = {f.node_id: f for f in await node_funnels(session, run_id)}
        assert report["profiles_targeted"] == funnel.profiles_targeted == 5
        assert report["delivered"] == funnel.delivered == 4
        assert report["tokens_invalidated"] == funnel.tokens_invalidated == 1
        assert report["opened"] == 1
        for node in report["nodes"]:
            stored = by_node[node["node_id"]]
            assert (node["targeted"], node["sent"], node["delivered"]) == (
                stored.targeted,
                stored.sent,
                stored.delivered,
            )
        [split] = report["splits"]
        assert split["counted_from"] == "run counts"
        sizes = [b["profiles"] for b in split["branches"]]
        assert sum(sizes) == 5
        assert sizes == [by_node[n].targeted if n in by_node else 0 for n in ("a", "b")]
        assert all(
            b["converted"] == 0 and b["conversion"] in (0.0, None) for b in split["branches"]
        )

        timeline = (await http.get("/v1/profiles/p0/timeline")).json()
        assert [(e["kind"], e["what"]) for e in timeline["items"]] == [
            ("push", "delivered"),
            ("interaction", "opened"),
        ]
        assert {e["tracking_id"] for e in timeline["items"]} == {opened["tracking_id"]}

        listed = await http.get("/v1/runs", params={"journey_id": "spring", "status": "completed"})
        assert [r["id"] for r in listed.json()["items"]] == [run_id]
        running = await http.get("/v1/runs", params={"status": "running"})
        assert running.json()["items"] == []

        cancelled = await http.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json() == {
            "run_id": run_id,
            "already_finished": True,
            "status": "completed",
        }

        # the CLI reads the same service layer: the same numbers
        env = {
            "TIDINGS_HOME": str(tmp_path),
            "TIDINGS_DATABASE_URL": database_url,
            "TIDINGS_ADMIN_KEY": ADMIN_KEY,
        }
        cli_report = await asyncio.to_thread(cli_json, env, "runs", "report", run_id)
        assert cli_report == report
        cli_runs = await asyncio.to_thread(cli_json, env, "runs", "list", "--journey", "spring")
        assert cli_runs == listed.json()["items"]
        cli_journeys = await asyncio.to_thread(cli_json, env, "journeys", "list")
        assert cli_journeys == (await http.get("/v1/journeys")).json()["items"]
        cli_journey = await asyncio.to_thread(cli_json, env, "journeys", "show", "spring")
        assert cli_journey == (await http.get("/v1/journeys/spring")).json()
        assert cli_journey["runs"] == 1
        cli_pushes = await asyncio.to_thread(cli_json, env, "runs", "pushes", run_id)
        assert cli_pushes == pushes


async def test_starting_names_what_is_wrong(
    tmp_path: Path, database_url: str, temporal_client: Client
) -> None:
    settings = make_settings(tmp_path, database_url, None)
    async with real_stack(settings, temporal_client) as stack:
        http = stack.http
        assert (await http.post("/v1/apps", json={"id": APP, "name": "S"})).status_code == 201
        assert (await http.put("/v1/profiles/p0", json={})).status_code == 200
        assert (await http.post("/v1/journeys", content=JOURNEY, headers=YAML)).status_code == 201

        unknown = await http.post("/v1/runs", json={"journey_id": "nope"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "journey_not_found"

        listed = await http.post(
            "/v1/runs",
            json={"journey_id": "spring", "audience": {"uploaded_list": "id\np0\nghost\n"}},
        )
        assert listed.status_code == 422
        assert "'ghost'" in listed.json()["error"]["message"]

        bad_filter = await http.post(
            "/v1/runs", json={"journey_id": "spring", "audience": {"where": ["plan"]}}
        )
        assert bad_filter.status_code == 422
        assert bad_filter.json()["error"]["code"] == "invalid_filter"

        other_app = await http.post(
            "/v1/runs", json={"journey_id": "spring", "audience": {"app": "elsewhere"}}
        )
        assert other_app.status_code == 422
        assert "'elsewhere'" in other_app.json()["error"]["message"]

        triggered = JOURNEY.replace("goal:\n  event: purchased", "trigger:\n  event: signed_up")
        triggered = triggered.replace("id: spring", "id: onboarding").replace(
            'audience:\n  where: ["plan=pro"]\n', ""
        )
        assert (await http.post("/v1/journeys", content=triggered, headers=YAML)).status_code == 201
        refused = await http.post("/v1/runs", json={"journey_id": "onboarding"})
        assert refused.status_code == 409
        assert "/v1/triggers/onboarding/enable" in refused.json()["error"]["message"]

        for path in ("/v1/runs/run-nope", "/v1/runs/run-nope/report", "/v1/runs/run-nope/pushes"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "run_not_found"
        assert (await http.post("/v1/runs/run-nope/cancel")).status_code == 404
        assert (await http.get("/v1/profiles/ghost/timeline")).status_code == 404

        # an app's key may not touch journeys or runs
        key = await http.post(f"/v1/apps/{APP}/keys", json={"name": "backend"})
        async with stack_client(stack, key.json()["key"]) as as_app:
            assert (await as_app.get("/v1/runs")).status_code == 403
            assert (await as_app.get("/v1/journeys")).status_code == 403


def stack_client(stack: Stack, key: str) -> httpx.AsyncClient:
    """A client of the stack's API holding ``key``."""
    return httpx.AsyncClient(
        transport=stack.http._transport,  # the stack's ASGI app, served in-process
        base_url=stack.http.base_url,
        headers={"Authorization": f"Bearer {key}"},
    )
