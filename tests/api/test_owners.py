"""A device's owner named by profile id or by app user id: nothing is created unasked."""

from __future__ import annotations

from sqlmodel import select

from tests.api.conftest import Api
from tidings.store.models import AppUserMapping, Device, Profile


def apns(n: int) -> str:
    return f"{n:064x}"


async def _stored(api: Api) -> tuple[set[str], dict[str, str], dict[str, str]]:
    async with api.db.read() as session:
        profiles = {p.id for p in (await session.exec(select(Profile))).all()}
        mappings = {
            m.app_user_id: m.profile_id for m in (await session.exec(select(AppUserMapping))).all()
        }
        devices = {d.token: d.profile_id for d in (await session.exec(select(Device))).all()}
    return profiles, mappings, devices


async def test_an_unknown_profile_or_app_user_is_refused_unless_creation_is_asked(
    api: Api,
) -> None:
    await api.create_app("shop", with_credentials=True)
    url = "/v1/apps/shop/devices"
    device = {"provider": "apns", "token": apns(1)}
    unknown = await api.admin.post(url, json=device | {"profile_id": "ann"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_profile"
    assert unknown.json()["error"]["details"][0]["loc"] == ["body", "profile_id"]
    no_user = await api.admin.post(url, json=device | {"app_user_id": "u-ann"})
    assert no_user.status_code == 404
    assert no_user.json()["error"]["code"] == "unknown_app_user"
    nobody = await api.admin.post(url, json=device)
    assert nobody.status_code == 422
    unmapped = await api.admin.put("/v1/apps/shop/users/u-ann", json={"profile_id": "ann"})
    assert unmapped.status_code == 404
    assert unmapped.json()["error"]["code"] == "unknown_profile"
    assert await _stored(api) == (set(), {}, {})

    # asked: the profile is created, and with an app user id the user is mapped to it
    created = await api.admin.post(
        url, json=device | {"profile_id": "ann", "app_user_id": "u-ann", "create_profile": True}
    )
    assert created.status_code == 200, created.text
    assert created.json()["profile_id"] == "ann"
    # by the app user id alone, through the mapping
    by_user = await api.admin.post(
        url, json={"provider": "apns", "token": apns(2), "app_user_id": "u-ann"}
    )
    assert by_user.json()["profile_id"] == "ann"
    # a new app user with create_profile gets a new profile
    fresh = await api.admin.post(
        url,
        json={"provider": "apns", "token": apns(3), "app_user_id": "u-new", "create_profile": True},
    )
    new_id = fresh.json()["profile_id"]
    assert new_id.startswith("p-")
    # naming a user mapped to another profile is a conflict
    elsewhere = await api.admin.post(
        url, json=device | {"profile_id": new_id, "app_user_id": "u-ann"}
    )
    assert elsewhere.status_code == 409
    assert elsewhere.json()["error"]["code"] == "app_user_mapped_elsewhere"
    profiles, mappings, devices = await _stored(api)
    assert profiles == {"ann", new_id}
    assert mappings == {"u-ann": "ann", "u-new": new_id}
    assert devices == {apns(1): "ann", apns(2): "ann", apns(3): new_id}


async def test_a_batch_answers_an_unknown_owner_in_its_place(api: Api) -> None:
    await api.create_app("shop", with_credentials=True)
    await api.admin.put("/v1/profiles/bob", json={})
    items = [
        {"profile_id": "bob", "provider": "apns", "token": apns(1)},
        {"profile_id": "ghost", "provider": "apns", "token": apns(2)},
        {"app_user_id": "u-ghost", "provider": "apns", "token": apns(3)},
        {"app_user_id": "u-cat", "create_profile": True, "provider": "apns", "token": apns(4)},
        {"app_user_id": "u-cat", "provider": "apns", "token": apns(5)},
    ]
    answer = await api.admin.post("/v1/apps/shop/devices/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    outcomes = [
        (i["status"], i["error"]["code"] if i["error"] else None, i["field"])
        for i in answer.json()["items"]
    ]
    assert outcomes == [
        ("registered", None, None),
        ("failed", "unknown_profile", "profile_id"),
        ("failed", "unknown_app_user", "app_user_id"),
        ("registered", None, None),
        ("registered", None, None),
    ]
    profiles, mappings, devices = await _stored(api)
    cat = mappings["u-cat"]
    assert profiles == {"bob", cat}
    assert devices == {apns(1): "bob", apns(4): cat, apns(5): cat}
