"""Devices: idempotent registration under concurrency, batches answered per item, refresh,
cleanup, and listing with each device's state."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select
from temporalio.client import Client

from tests.api.conftest import Api, offline_credentials
from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Delivery, Device, Profile
from tidings.store.targeting import invalidate_gone, quarantine
from tidings.store.types import utcnow


def apns(n: int) -> str:
    return f"{n:064x}"


async def stored_devices(api: Api) -> list[tuple[str, str]]:
    async with api.db.read() as session:
        rows = (await session.exec(select(Device).order_by(col(Device.id)))).all()
    return [(d.profile_id, d.token) for d in rows]


async def test_concurrent_registrations_of_one_token_end_with_one_row(api: Api) -> None:
    key = await api.create_app("busy")
    token = "a1" * 32
    async with api.client(key) as backend:
        answers = await asyncio.gather(
            *(
                backend.post(
                    "/v1/apps/busy/devices",
                    json={
                        "profile_id": f"p{n % 5}",
                        "create_profile": True,
                        "provider": "apns",
                        "token": token,
                    },
                )
                for n in range(20)
            )
        )
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    devices = await stored_devices(api)
    assert len(devices) == 1
    assert devices[0][1] == token
    async with api.db.read() as session:
        assert len((await session.exec(select(Profile))).all()) == 5


async def test_concurrent_batches_sharing_tokens_neither_deadlock_nor_duplicate(api: Api) -> None:
    await api.create_app("bat")
    tokens = [apns(n) for n in range(30)]

    def batch(order: list[str], profile: str) -> dict[str, object]:
        return {
            "items": [
                {"profile_id": profile, "create_profile": True, "provider": "apns", "token": t}
                for t in order
            ]
        }

    answers = await asyncio.gather(
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens, "x")),
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens[::-1], "y")),
        api.admin.post("/v1/apps/bat/devices/batch", json=batch(tokens[10:] + tokens[:10], "z")),
    )
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    devices = await stored_devices(api)
    assert sorted(t for _, t in devices) == sorted(tokens)
    # every token ended with one of the three profiles, once
    assert {p for p, _ in devices} <= {"x", "y", "z"}


async def test_a_batch_answers_each_item_and_keeps_the_valid_ones(api: Api) -> None:
    await api.create_app("mix")
    items = [
        {"profile_id": "a", "create_profile": True, "provider": "apns", "token": apns(1)},
        {"profile_id": "a", "create_profile": True, "provider": "apns", "token": "not-hex"},
        {
            "profile_id": "b",
            "create_profile": True,
            "provider": "fcm",
            "token": "fcm-token:APA91b-1",
        },
        {"profile_id": "b", "create_profile": True, "provider": "fcm", "token": "has space"},
        {"profile_id": "c", "create_profile": True, "provider": "apns", "token": "ab" * 101},
    ]
    answer = await api.admin.post("/v1/apps/mix/devices/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["registered"], body["failed"]) == (2, 3)
    assert [i["index"] for i in body["items"]] == [0, 1, 2, 3, 4]
    assert [i["status"] for i in body["items"]] == [
        "registered",
        "failed",
        "registered",
        "failed",
        "failed",
    ]
    assert body["items"][1]["error"]["code"] == "invalid_token"
    assert "whitespace" in body["items"][3]["error"]["message"]
    assert body["items"][2]["device"]["profile_id"] == "b"
    assert sorted(await stored_devices(api)) == [("a", apns(1)), ("b", "fcm-token:APA91b-1")]
    too_many = {"items": [items[0]] * 101}
    assert (await api.admin.post("/v1/apps/mix/devices/batch", json=too_many)).status_code == 422


async def test_refresh_replaces_the_token_and_keeps_the_profile(api: Api) -> None:
    await api.create_app("ref")
    first = (
        await api.admin.post(
            "/v1/apps/ref/devices",
            json={"profile_id": "r", "create_profile": True, "provider": "apns", "token": apns(1)},
        )
    ).json()
    refreshed = await api.admin.post(
        "/v1/apps/ref/devices/refresh",
        json={"old_token": apns(1).upper(), "new_token": apns(2)},
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["id"] == first["id"]
    assert await stored_devices(api) == [("r", apns(2))]
    # the new token was registered already (to someone else): that device is kept, for "r"
    await api.admin.post(
        "/v1/apps/ref/devices",
        json={"profile_id": "s", "create_profile": True, "provider": "apns", "token": apns(3)},
    )
    merged = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(2), "new_token": apns(3)}
    )
    assert merged.json()["profile_id"] == "r"
    assert await stored_devices(api) == [("r", apns(3))]
    unknown = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(9), "new_token": apns(8)}
    )
    assert unknown.json()["error"]["code"] == "token_not_registered"
    bad = await api.admin.post(
        "/v1/apps/ref/devices/refresh", json={"old_token": apns(3), "new_token": "zz"}
    )
    assert bad.json()["error"]["code"] == "invalid_token"
    assert await stored_devices(api) == [("r", apns(3))]


async def test_cleanup_one_device_all_of_a_profile_or_a_batch(api: Api) -> None:
    await api.create_app("cln")
    for profile, n in (("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5), ("c", 6)):
        await api.admin.post(
            "/v1/apps/cln/devices",
            json={
                "profile_id": profile,
                "create_profile": True,
                "provider": "apns",
                "token": apns(n),
            },
        )
    one = await api.admin.post(
        "/v1/apps/cln/devices/cleanup", json={"profile_id": "a", "token": apns(1).upper()}
    )
    assert one.json() == {"removed": 1}
    # a token is only removed for the profile that owns it
    other = await api.admin.post(
        "/v1/apps/cln/devices/cleanup", json={"profile_id": "b", "token": apns(2)}
    )
    assert other.json() == {"removed": 0}
    everything = await api.admin.post("/v1/apps/cln/devices/cleanup", json={"profile_id": "a"})
    assert everything.json() == {"removed": 2}
    batch = await api.admin.post(
        "/v1/apps/cln/devices/cleanup/batch",
        json={"items": [{"profile_id": "b", "token": apns(4)}, {"profile_id": "zzz"}]},
    )
    assert batch.json() == {
        "removed": 1,
        "items": [{"removed": 1, "index": 0}, {"removed": 0, "index": 1}],
    }
    device_id = (await api.admin.get("/v1/apps/cln/devices", params={"profile_id": "c"})).json()[
        "items"
    ][0]["id"]
    assert (await api.admin.delete(f"/v1/apps/cln/devices/{device_id}")).status_code == 204
    assert (await api.admin.delete(f"/v1/apps/cln/devices/{device_id}")).status_code == 404
    assert await stored_devices(api) == [("b", apns(5))]


async def test_devices_are_listed_with_their_state(api: Api) -> None:
    await api.create_app("lst")
    ids = {}
    for name, n in (("valid", 1), ("invalid", 2), ("quarantined", 3), ("stale", 4)):
        answer = await api.admin.post(
            "/v1/apps/lst/devices",
            json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": apns(n)},
        )
        ids[name] = answer.json()["id"]
    now = utcnow()
    async with api.db.write() as session:
        assert await invalidate_gone(session, ids["invalid"], now, "Unregistered", now)
        assert await quarantine(session, ids["quarantined"], "BadDeviceToken", now)
        await session.exec(
            update(Device)
            .where(col(Device.id) == ids["stale"])
            .values(registered_at=now - timedelta(days=40))
        )
    listed = (await api.admin.get("/v1/apps/lst/devices", params={"profile_id": "p"})).json()
    states = {d["id"]: (d["state"], d["state_reason"]) for d in listed["items"]}
    assert states == {
        ids["valid"]: ("valid", None),
        ids["invalid"]: ("invalid", "Unregistered"),
        ids["quarantined"]: ("quarantined", "BadDeviceToken"),
        ids["stale"]: ("stale", "not refreshed for 30 days"),
    }
    stale = next(d for d in listed["items"] if d["id"] == ids["stale"])
    assert stale["state_changed_at"] is not None
    only_stale = (await api.admin.get("/v1/apps/lst/devices", params={"state": "stale"})).json()
    assert [d["id"] for d in only_stale["items"]] == [ids["stale"]]
    only_valid = (await api.admin.get("/v1/apps/lst/devices", params={"state": "valid"})).json()
    assert [d["id"] for d in only_valid["items"]] == [ids["valid"]]
    # registering the stale token again revives it
    await api.admin.post(
        "/v1/apps/lst/devices",
        json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": apns(4)},
    )
    read = (await api.admin.get(f"/v1/apps/lst/devices/{ids['stale']}")).json()
    assert read["state"] == "valid"
    page = (await api.admin.get("/v1/apps/lst/devices", params={"limit": 3})).json()
    rest = (
        await api.admin.get(
            "/v1/apps/lst/devices", params={"limit": 3, "cursor": page["next_cursor"]}
        )
    ).json()
    assert len(page["items"]) == 3
    assert len(rest["items"]) == 1
    assert rest["next_cursor"] is None


async def test_tokens_are_masked_in_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    await api.create_app("log")
    caplog.set_level("DEBUG", logger="tidings")
    token = "c0ffee" * 20
    body = {"profile_id": "p", "create_profile": True, "provider": "apns", "token": token}
    assert (await api.admin.post("/v1/apps/log/devices", json=body)).is_success
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "c0ffee…" in logged
    assert token not in logged


async def test_mappings_are_looked_up_both_ways(api: Api) -> None:
    key = await api.create_app("map")
    async with api.client(key) as backend:
        for user, profile in (("u1", "p1"), ("u2", "p1"), ("u3", "p2")):
            answer = await backend.put(
                f"/v1/apps/map/users/{user}", json={"profile_id": profile, "create_profile": True}
            )
            assert answer.status_code == 200, answer.text
        assert (await backend.get("/v1/apps/map/users/u2")).json()["profile_id"] == "p1"
        reverse = (await backend.get("/v1/apps/map/users", params={"profile_id": "p1"})).json()
        assert [m["app_user_id"] for m in reverse["items"]] == ["u1", "u2"]
        moved = await backend.put(
            "/v1/apps/map/users/u2", json={"profile_id": "p2", "create_profile": True}
        )
        assert moved.json()["profile_id"] == "p2"
        reverse = (await backend.get("/v1/apps/map/users", params={"profile_id": "p2"})).json()
        assert [m["app_user_id"] for m in reverse["items"]] == ["u2", "u3"]
        assert (await backend.delete("/v1/apps/map/users/u2")).status_code == 204
        missing = await backend.get("/v1/apps/map/users/u2")
        assert missing.json()["error"]["code"] == "mapping_not_found"
    # mapping to a new profile id creates that (empty) profile
    assert (await api.admin.get("/v1/profiles/p2")).status_code == 200


def crossing_batches(tokens: list[str], prefix: str) -> list[dict[str, object]]:
    """Batches over the same tokens whose new profiles come in opposite orders: the first
    gives token i to profile i, the second to profile n-1-i, the third shuffles both."""
    n = len(tokens)

    def batch(owner: list[int]) -> dict[str, object]:
        return {
            "items": [
                {
                    "profile_id": f"{prefix}{owner[i]:03d}",
                    "create_profile": True,
                    "provider": "apns",
                    "token": tokens[i],
                }
                for i in range(n)
            ]
        }

    forward, backward = list(range(n)), list(range(n - 1, -1, -1))
    interleaved = [i // 2 if i % 2 == 0 else n - 1 - i // 2 for i in range(n)]
    return [batch(forward), batch(backward), batch(interleaved)]


async def test_concurrent_batches_with_crossing_profiles_all_succeed(api: Api) -> None:
    """Two batches that create the same new profiles in opposite orders once deadlocked on
    PostgreSQL (one answered 500); now every item of every batch is registered, and each
    token ends with exactly one profile."""
    await api.create_app("cross")
    for round_ in range(3):
        tokens = [apns(round_ * 1000 + n) for n in range(40)]
        bodies = crossing_batches(tokens, f"r{round_}-")
        answers = await asyncio.gather(
            *(api.admin.post("/v1/apps/cross/devices/batch", json=body) for body in bodies)
        )
        assert [a.status_code for a in answers] == [200] * len(bodies), [a.text for a in answers]
        assert all(a.json()["failed"] == 0 for a in answers)
        async with api.db.read() as session:
            rows = (await session.exec(select(Device).where(col(Device.token).in_(tokens)))).all()
        assert sorted(d.token for d in rows) == sorted(tokens)  # one row per token
        owners = {
            str(item["token"]): {str(item["profile_id"])}
            for item in bodies[0]["items"]  # type: ignore[attr-defined]
        }
        for body in bodies[1:]:
            for item in body["items"]:  # type: ignore[attr-defined]
                owners[str(item["token"])].add(str(item["profile_id"]))
        # each token belongs to one of the profiles a batch gave it, and to nobody else
        assert all(d.profile_id in owners[d.token] for d in rows)
        async with api.db.read() as session:
            profiles = (
                await session.exec(select(Profile).where(col(Profile.id).like(f"r{round_}-%")))
            ).all()
        assert len(profiles) == 40


async def test_a_batch_answers_bad_fields_per_item_and_keeps_the_good_ones(api: Api) -> None:
    await api.create_app("fields")
    items: list[object] = [
        {"profile_id": "good-1", "create_profile": True, "provider": "apns", "token": apns(1)},
        {
            "profile_id": "a/b",
            "create_profile": True,
            "provider": "apns",
            "token": apns(2),
        },  # not one path segment
        {"profile_id": "good-2", "create_profile": True, "provider": "webpush", "token": "x"},
        {"profile_id": "good-3", "create_profile": True, "provider": "fcm"},  # no token
        {
            "profile_id": "good-4",
            "create_profile": True,
            "provider": "fcm",
            "token": "t",
            "colour": "red",
        },
        42,  # not an object
        {"profile_id": "good-5", "create_profile": True, "provider": "fcm", "token": "fcm:5"},
    ]
    answer = await api.admin.post("/v1/apps/fields/devices/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["registered"], body["failed"]) == (2, 5)
    outcomes = [
        (i["index"], i["status"], i["error"] and i["error"]["code"], i["field"])
        for i in body["items"]
    ]
    assert outcomes == [
        (0, "registered", None, None),
        (1, "failed", "invalid_item", "profile_id"),
        (2, "failed", "invalid_item", "provider"),
        (3, "failed", "invalid_token", "token"),
        (4, "failed", "invalid_item", "colour"),
        (5, "failed", "invalid_item", None),
        (6, "registered", None, None),
    ]
    # the details name the item and its field, in the one error shape
    assert body["items"][1]["error"]["details"][0]["loc"] == ["body", "items", 1, "profile_id"]
    assert "provider" in body["items"][2]["error"]["message"]
    assert sorted(await stored_devices(api)) == [("good-1", apns(1)), ("good-5", "fcm:5")]
    # a malformed request is still refused as a whole, and stores nothing
    malformed_bodies: list[object] = [
        {"items": items[0]},  # not a list
        {"items": []},
        {"items": [items[0]] * 101},
        [items[0]],  # a list where an object is expected
    ]
    for malformed in malformed_bodies:
        refused = await api.admin.post("/v1/apps/fields/devices/batch", json=malformed)
        assert refused.status_code == 422, malformed
        assert refused.json()["error"]["code"] == "invalid_request"
    assert len(await stored_devices(api)) == 2


async def test_fcm_tokens_are_limited_to_4096_bytes_not_characters(api: Api) -> None:
    await api.create_app("fcm4k")

    def register(token: str) -> dict[str, object]:
        return {"profile_id": "p", "create_profile": True, "provider": "fcm", "token": token}

    fits_ascii, fits_utf8 = "a" * 4096, "é" * 2048  # both exactly 4096 bytes
    over_utf8 = "é" * 2048 + "a"  # 2049 characters, 4097 bytes
    for token in (fits_ascii, fits_utf8):
        answer = await api.admin.post("/v1/apps/fcm4k/devices", json=register(token))
        assert answer.status_code == 200, answer.text
    refused = await api.admin.post("/v1/apps/fcm4k/devices", json=register(over_utf8))
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_token"
    assert "4096 bytes" in refused.json()["error"]["message"]
    too_many_chars = await api.admin.post("/v1/apps/fcm4k/devices", json=register("a" * 4097))
    assert too_many_chars.status_code == 422
    batch = await api.admin.post(
        "/v1/apps/fcm4k/devices/batch",
        json={"items": [register("b" * 4096), register(over_utf8), register("b" * 4097)]},
    )
    assert [(i["status"], i["field"]) for i in batch.json()["items"]] == [
        ("registered", None),
        ("failed", "token"),
        ("failed", "token"),
    ]
    assert [i["error"]["code"] for i in batch.json()["items"][1:]] == ["invalid_token"] * 2
    assert sorted(len(t.encode()) for _, t in await stored_devices(api)) == [4096] * 3


async def test_an_invalidated_device_is_listed_with_when_and_why(api: Api) -> None:
    await api.create_app("gone")
    answer = await api.admin.post(
        "/v1/apps/gone/devices",
        json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": apns(7)},
    )
    device_id = answer.json()["id"]
    registered = datetime.fromisoformat(answer.json()["registered_at"])
    invalidated_at = registered + timedelta(hours=3, microseconds=250)
    async with api.db.write() as session:
        gone = await invalidate_gone(
            session, device_id, registered + timedelta(hours=1), "Unregistered", invalidated_at
        )
        assert gone
    [listed] = (await api.admin.get("/v1/apps/gone/devices", params={"state": "invalid"})).json()[
        "items"
    ]
    assert (listed["id"], listed["state"], listed["state_reason"]) == (
        device_id,
        "invalid",
        "Unregistered",
    )
    assert datetime.fromisoformat(listed["state_changed_at"]) == invalidated_at
    read = (await api.admin.get(f"/v1/apps/gone/devices/{device_id}")).json()
    assert datetime.fromisoformat(read["state_changed_at"]) == invalidated_at


async def test_stale_tokens_are_listed_stale_and_not_targeted_by_a_send(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A token not refreshed for stale_after_days gets no push from a real run (the
    providers are the simulators), is listed as stale, and is targeted again once the app
    registers it anew."""
    settings = make_settings(tmp_path, database_url, sims, stale_after_days=30)
    team, key_id, project = unique_ids()
    fresh, stale = apns(0xF1), apns(0x57)
    async with real_stack(settings, temporal_client) as stack:
        body = {"id": "stale", "name": "Stale"} | app_credentials(
            sims, team_id=team, key_id=key_id, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201
        ids = {}
        for token in (fresh, stale):
            answer = await stack.http.post(
                "/v1/apps/stale/devices",
                json={
                    "profile_id": "p",
                    "create_profile": True,
                    "provider": "apns",
                    "token": token,
                },
            )
            ids[token] = answer.json()["id"]
        async with stack.db.write() as session:
            await session.exec(
                update(Device)
                .where(col(Device.id) == ids[stale])
                .values(registered_at=utcnow() - timedelta(days=31))
            )
        listed = (await stack.http.get("/v1/apps/stale/devices")).json()["items"]
        assert {d["token"]: d["state"] for d in listed} == {fresh: "valid", stale: "stale"}

        async def run_once(journey_id: str) -> set[str]:
            journey = parse_definition(
                {
                    "id": journey_id,
                    "name": journey_id,
                    "app": "stale",
                    "nodes": [{"id": "hi", "type": "push", "content": {"body": "hi"}}],
                }
            )
            run = await start_run(temporal_client, stack.db, settings, journey, profile_ids=["p"])
            await run.handle.result()
            async with stack.db.read() as session:
                rows = (
                    await session.exec(select(Delivery).where(col(Delivery.run_id) == run.run_id))
                ).all()
            return {d.status for d in rows if d.device_id == ids[stale]}

        assert await run_once("first") == set()  # no ledger row for the stale device
        assert {r.token for r in sims.apns.accepted()} == {fresh}
        # registering it again revives it: the next run reaches it
        await stack.http.post(
            "/v1/apps/stale/devices",
            json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": stale},
        )
        assert await run_once("second") == {"delivered"}
        assert sorted(r.token for r in sims.apns.accepted()) == sorted([fresh, fresh, stale])


async def _break_the_store(api: Api, table: str, column: str) -> None:
    """Make writes to the table fail with an error that is no constraint violation: on
    PostgreSQL a trigger whose message quotes the new row's value (as constraint messages
    do), on SQLite a renamed table (SQLAlchemy's message then lists the bound values, unless
    they are hidden)."""
    async with api.db.write() as session:
        if api.db.is_sqlite:
            await (await session.connection()).execute(
                text(f"ALTER TABLE {table} RENAME TO {table}_away")
            )
            return
        await (await session.connection()).execute(
            text(
                f"CREATE FUNCTION refuse_{table}() RETURNS trigger AS $$ BEGIN "
                f"RAISE EXCEPTION 'refusing %', NEW.{column}; END $$ LANGUAGE plpgsql"
            )
        )
        await (await session.connection()).execute(
            text(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT OR UPDATE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION refuse_{table}()"
            )
        )


async def test_a_store_error_is_answered_500_and_logged_without_values(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    await api.create_app("leak")
    token = "5ec7e7" * 12
    email = "ann.secret@example.com"
    await _break_the_store(api, "device", "token")
    await _break_the_store(api, "profile", "email")
    # tidings at its most verbose, and SQLAlchemy's statement log on (aiosqlite, which logs
    # every statement's values, is kept at WARNING by tidings.logs)
    caplog.set_level("DEBUG", logger="tidings")
    caplog.set_level("INFO", logger="sqlalchemy.engine")
    answers = [
        await api.admin.post(
            "/v1/apps/leak/devices",
            json={"profile_id": "p", "create_profile": True, "provider": "apns", "token": token},
        ),
        await api.admin.put("/v1/profiles/ann", json={"email": email}),
    ]
    # answered by the API itself (the error is not re-raised to the server), in the one shape
    assert [a.status_code for a in answers] == [500, 500]
    assert {a.json()["error"]["code"] for a in answers} == {"internal_error"}
    assert all(token not in a.text and email not in a.text for a in answers)
    errors = [r for r in caplog.records if r.name == "tidings.api.errors"]
    assert len(errors) == 2
    assert "PUT /v1/profiles/{profile_id}" in errors[1].getMessage()
    assert "Traceback" in errors[0].getMessage()  # still says where it happened
    logged = caplog.text + "".join(
        f"{r.getMessage()}{r.exc_text or ''}{r.args!r}" for r in caplog.records
    )
    assert token not in logged
    assert email not in logged


async def test_a_token_of_a_platform_the_app_has_no_credentials_for_is_kept_with_a_warning(
    api: Api,
) -> None:
    key = await api.create_app("fcm-only")
    added = await api.admin.patch("/v1/apps/fcm-only", json={"fcm": offline_credentials()["fcm"]})
    assert added.status_code == 200, added.text
    ios = {"profile_id": "ann", "create_profile": True, "provider": "apns", "token": apns(1)}
    android = {
        "profile_id": "ann",
        "create_profile": True,
        "provider": "fcm",
        "token": "ann-android",
    }
    expected = [
        {
            "code": "provider_not_configured",
            "message": "app 'fcm-only' has no APNs credentials: the token is kept, but "
            "nothing is sent to it until the app gets them",
        }
    ]
    async with api.client(key) as backend:
        single = await backend.post("/v1/apps/fcm-only/devices", json=ios)
        assert single.status_code == 200, single.text
        assert single.json()["warnings"] == expected
        fine = await backend.post("/v1/apps/fcm-only/devices", json=android)
        assert fine.json()["warnings"] == []
        batch = await backend.post(
            "/v1/apps/fcm-only/devices/batch",
            json={"items": [android, ios | {"token": apns(2)}]},
        )
        assert batch.status_code == 200, batch.text
        assert [(i["status"], i["warnings"]) for i in batch.json()["items"]] == [
            ("registered", []),
            ("registered", expected),
        ]
        # once the app has APNs credentials, the warning goes
        added = await api.admin.patch(
            "/v1/apps/fcm-only", json={"apns": offline_credentials()["apns"]}
        )
        assert added.status_code == 200, added.text
        again = await backend.post("/v1/apps/fcm-only/devices", json=ios)
        assert again.json()["warnings"] == []
    assert sorted(t for _, t in await stored_devices(api)) == sorted(
        [apns(1), apns(2), "ann-android"]
    )
