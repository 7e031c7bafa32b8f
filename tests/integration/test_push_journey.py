"""One push journey end to end: the real dev server, aioapns and firebase-admin talking to
the simulators over sockets, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select
from temporalio.client import Client

from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Delivery, DeliveryStatus, Device, DeviceState
from tidings.store.reports import run_funnel

APP = "e2e"


def journey(**push: object) -> dict[str, object]:
    return {
        "id": "hello",
        "name": "Hello",
        "app": APP,
        "nodes": [
            {
                "id": "hello-push",
                "type": "push",
                "content": {"title": "Hi {{ first_name }}", "body": "welcome"},
                "next": "done",
                **push,
            },
            {"id": "done", "type": "exit"},
        ],
    }


def apns_token(n: int) -> str:
    return f"{n:064x}"


def fcm_token(n: int) -> str:
    return f"fcm-token-{n}:APA91b{n:040d}"


async def test_push_journey_reaches_every_valid_device_once(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    settings = make_settings(tmp_path, database_url, sims, cohort_size=7, cohort_window=2)
    team, key, project = unique_ids()
    async with real_stack(settings, temporal_client) as stack:
        body = {"id": APP, "name": "E2E"} | app_credentials(
            sims, team_id=team, key_id=key, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201

        # 20 profiles; each has an iOS device, every other one an Android device too, and
        # profile 19 has none. Two tokens of each provider are gone at the providers.
        valid: dict[str, str] = {}
        gone = {apns_token(3), apns_token(8), fcm_token(4), fcm_token(10)}
        for n in range(20):
            profile = f"p{n:02d}"
            put = await stack.http.put(
                f"/v1/profiles/{profile}", json={"attributes": {"first_name": f"N{n}"}}
            )
            assert put.status_code == 200
            if n == 19:
                continue
            devices = [("apns", apns_token(n))] + ([("fcm", fcm_token(n))] if n % 2 == 0 else [])
            for provider, token in devices:
                answer = await stack.http.post(
                    f"/v1/apps/{APP}/devices",
                    json={
                        "profile_id": profile,
                        "create_profile": True,
                        "provider": provider,
                        "token": token,
                    },
                )
                assert answer.status_code == 200, answer.text
                if token not in gone:
                    valid[token] = profile
        sims.apns.mark_unregistered([t for t in gone if not t.startswith("fcm")])
        sims.fcm.mark_unregistered([t for t in gone if t.startswith("fcm")])

        definition = parse_definition(journey())
        profiles = [f"p{n:02d}" for n in range(20)]
        started = await start_run(
            temporal_client, stack.db, settings, definition, profile_ids=profiles
        )
        result = await started.handle.result()

        # exactly one accepted push per valid device, each carrying its ledger tracking id
        accepted = [*sims.apns.accepted(), *sims.fcm.accepted()]
        assert sorted(r.token for r in accepted) == sorted(valid)
        async with stack.db.read() as session:
            rows = (
                await session.exec(select(Delivery).where(col(Delivery.run_id) == started.run_id))
            ).all()
            stored = {d.token: d for d in (await session.exec(select(Device))).all()}
            funnel = await run_funnel(session, started.run_id)

        delivered = {r.tracking_id for r in rows if r.status == DeliveryStatus.DELIVERED}
        assert delivered == {r.tracking_id for r in accepted}
        # each push was rendered for its profile and carries its tracking id in the data
        for record in sims.apns.accepted():
            profile = valid[record.token]
            assert record.payload is not None
            assert record.payload["aps"]["alert"]["title"] == f"Hi N{int(profile[1:])}"
            assert record.payload["trackingId"] == record.tracking_id
        # the tokens marked unregistered are invalid in the store, the others valid
        for token, device in stored.items():
            expected = DeviceState.INVALID if token in gone else DeviceState.VALID
            assert device.state == expected, token
        # the ledger and the funnel agree, and so does the workflow's own count
        assert funnel.profiles_targeted == 20
        assert funnel.delivered == len(valid) == result.counts["push.delivered"]
        assert funnel.tokens_invalidated == len(gone) == result.counts["invalidated"]
        assert funnel.pushes_sent == len(valid) + len(gone)
        assert funnel.not_sent_reasons == {"no valid device": 1}
        assert result.cohorts == 3  # 20 profiles in cohorts of 7
