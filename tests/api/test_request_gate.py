"""What a request meets before a router reads it: the key checked from the headers, bodies
capped without being read past the cap, and failed authentications limited per address."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from sqlmodel import select

from tests.api.conftest import BASE_URL, Api
from tests.harness import ADMIN_KEY
from tidings.api.throttle import DEFAULT_BURST, FailedAuthentications
from tidings.store.models import Device, Interaction

MiB = 1 << 20
CHUNK = 64 << 10
COMPAT = "/compat/ci-journeys/api/v1.0/orgs/org"


class Upload:
    """A request body streamed in chunks, counting how much of it the API pulled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            chunk = b" " * min(CHUNK, self.size - self.pulled)
            self.pulled += len(chunk)
            yield chunk


def client(api: Api, key: str | None, address: str = "127.0.0.1") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)


async def test_a_body_without_a_valid_key_is_refused_before_any_of_it_is_read(api: Api) -> None:
    for key in (None, "tdk_0123456789abcdef_" + "x" * 43, "not-a-key"):
        upload = Upload(8 * MiB)
        async with client(api, key) as stranger:
            answer = await stranger.post(
                "/v1/apps/shop/devices/batch",
                content=upload,
                headers={"Content-Type": "application/json"},
            )
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"
        assert upload.pulled == 0, key


async def test_a_body_over_the_limit_is_answered_413_without_reading_past_it(api: Api) -> None:
    await api.create_app("shop")
    json_type = {"Content-Type": "application/json"}
    # declared too large: answered before a byte is read
    declared = Upload(2 * MiB)
    answer = await api.admin.post(
        "/v1/apps/shop/devices/batch",
        content=declared,
        headers=json_type | {"Content-Length": str(2 * MiB)},
    )
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == {
        "code": "too_large",
        "message": "the request body is larger than this route takes: at most 1 MiB",
        "details": [],
    }
    assert declared.pulled == 0
    # streamed without a length: cut off as it passes the limit
    streamed = Upload(8 * MiB)
    answer = await api.admin.post(
        "/v1/apps/shop/devices/batch", content=streamed, headers=json_type
    )
    assert answer.status_code == 413, answer.text
    assert "at most 1 MiB" in answer.json()["error"]["message"]
    assert MiB < streamed.pulled <= MiB + CHUNK
    # the compatible surface's single items, read before their key is known, take less
    report = Upload(MiB)
    async with api.client(None) as device_app:
        answer = await device_app.post(
            f"{COMPAT}/pushdatareceiver/events", content=report, headers=json_type
        )
    assert answer.status_code == 413, answer.text
    assert "at most 128 KiB" in answer.json()["error"]["message"]
    assert report.pulled <= (128 << 10) + CHUNK
    async with api.db.read() as session:
        assert (await session.exec(select(Device))).all() == []
        assert (await session.exec(select(Interaction))).all() == []


async def test_the_limit_takes_a_full_batch_of_the_longest_tokens(api: Api) -> None:
    key = await api.create_app("shop")
    items = [
        {
            "profile_id": f"p{n:03d}",
            "create_profile": True,
            "provider": "fcm",
            "token": f"{n:03d}" + "t" * 4093,
        }
        for n in range(100)
    ]
    async with api.client(key) as backend:
        answer = await backend.post("/v1/apps/shop/devices/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    assert answer.json()["registered"] == 100


async def test_failed_authentications_are_limited_per_address_never_a_valid_key(
    api: Api,
) -> None:
    key = await api.create_app("shop")
    wrong = "tdk_0123456789abcdef_" + "x" * 43
    async with client(api, wrong, "203.0.113.7") as attacker:
        answers = [await attacker.get("/v1/apps/shop/devices") for _ in range(DEFAULT_BURST)]
        assert {a.status_code for a in answers} == {401}
        limited = await attacker.get("/v1/apps/shop/devices")
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # no key at all counts as a failure too
        assert (await attacker.get("/v1/apps", headers={"Authorization": ""})).status_code == 429
    # valid keys from the same address are served; other addresses are not limited
    for valid in (key, ADMIN_KEY):
        async with client(api, valid, "203.0.113.7") as backend:
            assert (await backend.get("/v1/apps/shop/devices")).status_code == 200
    async with client(api, wrong, "198.51.100.1") as other:
        assert (await other.get("/v1/apps/shop/devices")).status_code == 401
    # an IPv6 host holds its whole /64: rotating addresses inside it does not help
    for n in range(DEFAULT_BURST):
        async with client(api, wrong, f"2001:db8:1:2::{n + 1:x}") as rotating:
            assert (await rotating.get("/v1/apps")).status_code == 401
    async with client(api, wrong, "2001:db8:1:2:ffff::1") as rotating:
        assert (await rotating.get("/v1/apps")).status_code == 429


async def test_failed_compat_keys_count_against_the_address(api: Api) -> None:
    key = await api.create_app("shop")
    body = {"MobileAppId": "shop", "RegistrationRequestIds": ["r-1"]}
    status = f"{COMPAT}/pushdeviceregistration/devices/status"
    async with client(api, None, "203.0.113.9") as caller:
        for _ in range(DEFAULT_BURST):
            refused = await caller.post(status, json=body | {"ApiToken": "wrong"})
            assert refused.status_code == 400
        limited = await caller.post(status, json=body | {"ApiToken": "wrong"})
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["Retry-After"]) >= 1
        registration = {"MobileAppId": "shop", "UserId": "u", "ApnsDeviceToken": "ab" * 32}
        unknown = await caller.post(
            f"{COMPAT}/pushdeviceregistration/devices", json=registration | {"ApiToken": "x"}
        )
        assert unknown.status_code == 429
        # the app's real key still works from there
        served = await caller.post(status, json=body | {"ApiToken": key})
        assert served.status_code == 200, served.text


def test_the_limit_refills_and_forgets_sources_within_its_bound() -> None:
    now = [1000.0]
    limit = FailedAuthentications(burst=3, refill_per_s=1.0, max_sources=100, clock=lambda: now[0])
    assert [limit.fail("a") for _ in range(3)] == [None, None, None]
    assert limit.fail("a") == 1
    now[0] += 1.0
    assert limit.fail("a") is None
    assert limit.fail("a") == 1
    # an attacker rotating sources never grows the table past its bound
    for n in range(10_000):
        limit.fail(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        assert len(limit) <= 100
    # refilled buckets are forgotten
    now[0] += 10.0
    limit.fail("b")
    assert len(limit) == 1
