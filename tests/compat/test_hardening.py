"""The compatible surface under pressure: callbacks that would reach inside the network,
redirects and slow receivers, concurrent batches with crossing profiles, and reports that
arrive after the device's token was refreshed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlmodel import select

from tests.api.conftest import Api, sent_push, serving
from tests.compat.conftest import CallbackServer
from tests.compat.test_ci_journeys import APNS_TOKEN, APP, DEVICES, EVENTS, TRACK, USER, devices
from tidings.store.db import Database
from tidings.store.models import Device, Interaction, RegistrationRequest

INTERNAL = [
    "http://127.0.0.1:9/cb",
    "http://localhost:9/cb",
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://10.1.2.3/cb",
    "http://192.168.0.1/cb",
    "http://100.64.0.1/cb",  # carrier-grade NAT
    "http://0.0.0.0:9/cb",
    "http://[::1]:9/cb",
    "http://[::ffff:127.0.0.1]:9/cb",  # IPv4-mapped loopback
    "http://[fe80::1]/cb",
    "https://no-such-host.invalid/cb",
    # IPv6 forms carrying a loopback, private or link-local IPv4 address
    "http://[::7f00:1]:9/cb",  # IPv4-compatible
    "http://[::127.0.0.1]:9/cb",
    "http://[64:ff9b::7f00:1]:9/cb",  # NAT64
    "http://[64:ff9b::a00:1]/cb",
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "http://[64:ff9b:1::a00:1]/cb",  # local-use NAT64
    "http://[2002:7f00:1::1]:9/cb",  # 6to4
    "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
]


def registration(key: str, token: str = APNS_TOKEN, user: str = USER) -> dict[str, str]:
    return {"MobileAppId": APP, "UserId": user, "ApiToken": key, "ApnsDeviceToken": token}


@pytest.mark.parametrize("url", INTERNAL)
async def test_callbacks_inside_the_network_are_refused_by_default(
    tmp_path: Path, db: Database, url: str
) -> None:
    async with serving(tmp_path, db) as api:
        key = await api.create_app(APP, with_credentials=True)
        for path, body in (
            (DEVICES, registration(key)),
            (f"{DEVICES}/batch", [registration(key)]),
        ):
            answer = await api.admin.post(
                path, json=body, headers=TRACK | {"x-ms-callback-url": url}
            )
            assert answer.status_code == 400, (path, url)
            error = answer.json()["error"]
            assert error["code"] == "callback_url_not_allowed"
            assert error["message"].startswith("x-ms-callback-url is refused")
            assert error["details"][0]["loc"] == ["header", "x-ms-callback-url"]
        assert await devices(api) == []
        async with api.db.read() as session:
            assert (await session.exec(select(RegistrationRequest))).all() == []


async def test_ops_may_allow_hosts_and_networks(
    tmp_path: Path, db: Database, callback_server: CallbackServer
) -> None:
    port = callback_server.url.rsplit(":", 1)[1]
    async with serving(tmp_path, db, callback_allowed=["10.0.0.0/8", "127.0.0.0/8"]) as api:
        key = await api.create_app(APP, with_credentials=True)
        answer = await api.admin.post(
            DEVICES, json=registration(key), headers={"x-ms-callback-url": callback_server.url}
        )
        assert answer.status_code == 202
    async with serving(tmp_path, db, callback_allowed=["localhost"]) as api:
        other = registration(key, token="cd" * 32)
        by_name = f"http://localhost:{port}/by-name"
        answer = await api.admin.post(DEVICES, json=other, headers={"x-ms-callback-url": by_name})
        assert answer.status_code == 202
        # an allowed name does not allow its address by another spelling
        by_address = await api.admin.post(
            DEVICES, json=other, headers={"x-ms-callback-url": f"{callback_server.url}/x"}
        )
        assert by_address.status_code == 400
    assert [r.path for r in callback_server.received] == ["/", "/by-name"]


async def test_a_callback_follows_no_redirect_and_gives_up_in_time(
    tmp_path: Path, db: Database, callback_server: CallbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(tmp_path, db, callback_allowed=["127.0.0.1"], callback_timeout_s=0.3) as api:
        key = await api.create_app(APP, with_credentials=True)
        callback_server.answer = (307, [(b"location", f"{callback_server.url}/moved".encode())])
        headers = {"x-ms-callback-url": f"{callback_server.url}/first"}
        assert (
            await api.admin.post(DEVICES, json=registration(key), headers=headers)
        ).status_code == 202
        assert [r.path for r in callback_server.received] == ["/first"]  # never /moved
        # a receiver that does not answer in time: the callback is dropped, and logged
        callback_server.answer = (200, [])
        callback_server.delay_s = 3.0
        caplog.set_level("INFO", logger="tidings")
        slow = {"x-ms-callback-url": f"{callback_server.url}/slow"}
        other = registration(key, token="ef" * 32)
        assert (await api.admin.post(DEVICES, json=other, headers=slow)).status_code == 202
    warnings = [r.getMessage() for r in caplog.records if "callback" in r.getMessage()]
    assert any("127.0.0.1 failed" in w for w in warnings), warnings
    assert all("/slow" not in w for w in warnings)  # the host only: a URL may hold secrets
    bad_headers = TRACK | {
        "x-ms-callback-url": f"{callback_server.url}/h",
        "x-ms-callback-url-headers": '{"X-Evil": "a\\r\\nInjected: yes"}',
    }
    async with serving(tmp_path, db, callback_allowed=["127.0.0.1"]) as api:
        refused = await api.admin.post(DEVICES, json=registration(key), headers=bad_headers)
        assert refused.status_code == 400


async def test_concurrent_compat_batches_with_crossing_profiles_all_succeed(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    tokens = [f"{n:064x}" for n in range(1, 41)]
    n = len(tokens)
    orders = [
        list(range(n)),
        list(range(n - 1, -1, -1)),
        [i // 2 if i % 2 == 0 else n - 1 - i // 2 for i in range(n)],
    ]
    batches = [
        [registration(key, token=tokens[i], user=f"u{owner[i]:03d}") for i in range(n)]
        for owner in orders
    ]
    answers = await asyncio.gather(
        *(api.admin.post(f"{DEVICES}/batch", json=b, headers=TRACK) for b in batches)
    )
    assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
    ids = [item["RegistrationRequestId"] for a in answers for item in a.json()]
    statuses = await api.admin.post(
        f"{DEVICES}/status/",
        json={"RegistrationRequestIds": ids[:100], "MobileAppId": APP, "ApiToken": key},
    )
    rest = await api.admin.post(
        f"{DEVICES}/status/",
        json={"RegistrationRequestIds": ids[100:], "MobileAppId": APP, "ApiToken": key},
    )
    assert {s["Status"] for s in statuses.json() + rest.json()} == {"Success"}
    stored = await devices(api)
    assert sorted(t for _, t in stored) == sorted(tokens)  # each token once
    owners = {tokens[i]: {f"u{owner[i]:03d}" for owner in orders} for i in range(n)}
    assert all(user in owners[token] for user, token in stored)


async def test_a_report_after_a_token_refresh_is_accepted_for_either_token(api: Api) -> None:
    """The push went to the old token; the app reports after refreshing it, with the old
    token (the one the push was sent to) or the new one. A push sent after the refresh
    went to the new token only."""
    key = await api.create_app(APP, with_credentials=True)
    old, new = APNS_TOKEN, "9f" * 32
    assert (await api.admin.post(DEVICES, json=registration(key))).status_code == 202
    async with api.db.read() as session:
        device = (await session.exec(select(Device))).one()
    before = await sent_push(api.db, app_id=APP, profile_id=USER, device_id=device.id)
    async with api.client(key) as backend:
        refreshed = await backend.post(
            f"/v1/apps/{APP}/devices/refresh", json={"old_token": old, "new_token": new}
        )
    assert refreshed.status_code == 200, refreshed.text
    after = await sent_push(
        api.db, app_id=APP, profile_id=USER, device_id=device.id, node_id="later"
    )

    def opened(tracking: str, token: str) -> dict[str, object]:
        return {"TrackingId": tracking, "DeviceToken": token, "PushNotificationStatus": 1}

    async with api.client(None) as device_app:
        answers = {
            "before, old token": await device_app.post(EVENTS, json=opened(before, old)),
            "before, old token upper-case": await device_app.post(
                EVENTS, json=opened(before, old.upper())
            ),
            "before, new token": await device_app.post(EVENTS, json=opened(before, new)),
            "before, unrelated": await device_app.post(EVENTS, json=opened(before, "ee" * 32)),
            "after, new token": await device_app.post(EVENTS, json=opened(after, new)),
            "after, old token": await device_app.post(EVENTS, json=opened(after, old)),
        }
    assert {name: a.status_code for name, a in answers.items()} == {
        "before, old token": 202,
        "before, old token upper-case": 202,
        "before, new token": 202,
        "before, unrelated": 400,
        "after, new token": 202,
        "after, old token": 400,
    }
    assert answers["after, old token"].json()["error"]["code"] == "device_token_mismatch"


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Proxy-Authorization",
    ],
)
async def test_callback_headers_may_not_set_the_connection_or_framing(
    api: Api, callback_server: CallbackServer, header: str
) -> None:
    key = await api.create_app(APP, with_credentials=True)
    headers = TRACK | {
        "x-ms-callback-url": callback_server.url,
        "x-ms-callback-url-headers": json.dumps({"X-Fine": "yes", header: "evil.example"}),
    }
    for path, body in ((DEVICES, registration(key)), (f"{DEVICES}/batch", [registration(key)])):
        refused = await api.admin.post(path, json=body, headers=headers)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["message"].startswith(f"x-ms-callback-url-headers may not set {header}:")
        assert error["details"][0]["loc"] == ["header", "x-ms-callback-url-headers", header]
    assert await devices(api) == []
    assert callback_server.received == []


async def test_a_callback_host_is_resolved_only_for_a_valid_key(
    tmp_path: Path, db: Database
) -> None:
    """A stranger's registration never makes tidings resolve a name: its callback is not
    looked at (nothing is stored and no callback is sent for an invalid key anyway)."""
    unresolvable = {"x-ms-callback-url": "https://no-such-host.invalid/cb"}
    async with serving(tmp_path, db) as api:
        key = await api.create_app(APP, with_credentials=True)
        stranger = await api.admin.post(
            DEVICES, json=registration("tdk_forged"), headers=unresolvable
        )
        assert stranger.status_code == 202, stranger.text
        batch = await api.admin.post(
            f"{DEVICES}/batch", json=[registration("tdk_forged")], headers=unresolvable
        )
        assert batch.status_code == 202, batch.text
        known = await api.admin.post(DEVICES, json=registration(key), headers=unresolvable)
        assert known.status_code == 400
        assert "does not resolve" in known.json()["error"]["message"]
        assert await devices(api) == []


async def test_reports_naming_no_push_are_counted_never_stored(api: Api) -> None:
    key = await api.create_app(APP, with_credentials=True)
    async with api.client(None) as stranger:
        answers = await asyncio.gather(
            *(
                stranger.post(
                    EVENTS,
                    json={
                        "TrackingId": f"00000000-0000-0000-0000-{n:012d}",
                        "DeviceToken": "ee" * 32,
                        "PushNotificationStatus": n % 2,
                    },
                )
                for n in range(500)
            )
        )
    assert {a.status_code for a in answers} == {400}
    assert {a.json()["error"]["code"] for a in answers} == {"unknown_tracking_id"}
    assert api.app.state.tidings.unmatched_compat_reports == 500
    # a push whose device was deleted since is answered the same
    assert (await api.admin.post(DEVICES, json=registration(key))).status_code == 202
    async with api.db.read() as session:
        device = (await session.exec(select(Device))).one()
    tracking = await sent_push(api.db, app_id=APP, profile_id=USER, device_id=device.id)
    removed = {"MobileAppId": APP, "ApiToken": key, "UserId": USER}
    assert (await api.admin.post(f"{DEVICES}/cleanup", json=removed)).status_code == 202
    async with api.client(None) as device_app:
        late = await device_app.post(
            EVENTS,
            json={"TrackingId": tracking, "DeviceToken": APNS_TOKEN, "PushNotificationStatus": 1},
        )
    assert late.status_code == 400
    assert late.json()["error"] == {
        "code": "unknown_tracking_id",
        "message": f"no push has tracking id {tracking!r}",
        "details": [],
    }
    assert api.app.state.tidings.unmatched_compat_reports == 501
    async with api.db.read() as session:
        assert (await session.exec(select(Interaction))).all() == []
