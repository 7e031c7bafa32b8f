"""Profiles: create, replace, patch, read, list, look up by email or phone, and erase."""

from __future__ import annotations

from sqlmodel import select

from tests.api.conftest import Api, sent_push
from tidings.store.models import AppUserMapping, Delivery, Device, Erasure, Interaction, Profile


async def test_profiles_are_created_patched_and_found_by_email_or_phone(api: Api) -> None:
    body = {
        "id": "ada",
        "email": "Ada@Example.COM",
        "phone": "+442071234567",
        "timezone": "Europe/London",
        "locale": "en-GB",
        "attributes": {"plan": "pro", "first_name": "Ada"},
    }
    created = await api.admin.post("/v1/profiles", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "ada@example.com"
    again = await api.admin.post("/v1/profiles", json=body)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "profile_exists"

    patched = await api.admin.patch(
        "/v1/profiles/ada", json={"locale": "fr-FR", "attributes": {"plan": None, "team": "x"}}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["attributes"] == {"first_name": "Ada", "team": "x"}
    assert patched.json()["email"] == "ada@example.com"
    assert patched.json()["locale"] == "fr-FR"

    by_email = await api.admin.post("/v1/profiles/lookup", json={"email": "ADA@example.com"})
    assert by_email.json()["id"] == "ada"
    by_phone = await api.admin.post("/v1/profiles/lookup", json={"phone": "+442071234567"})
    assert by_phone.json()["id"] == "ada"
    nobody = await api.admin.post("/v1/profiles/lookup", json={"email": "x@example.com"})
    assert nobody.status_code == 404
    both = await api.admin.post(
        "/v1/profiles/lookup", json={"email": "x@example.com", "phone": "+442071234567"}
    )
    assert both.status_code == 422

    # PUT replaces every field; absent ones are emptied
    replaced = await api.admin.put("/v1/profiles/ada", json={"attributes": {"k": 1}})
    assert replaced.json()["email"] is None
    assert replaced.json()["attributes"] == {"k": 1}
    assert (await api.admin.patch("/v1/profiles/nobody", json={})).status_code == 404


async def test_email_and_phone_belong_to_one_profile(api: Api) -> None:
    await api.admin.put("/v1/profiles/one", json={"email": "same@example.com"})
    taken = await api.admin.put("/v1/profiles/two", json={"email": "SAME@example.com"})
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "email_taken"
    assert (await api.admin.get("/v1/profiles/two")).status_code == 404
    await api.admin.put("/v1/profiles/one", json={"phone": "+15555550100"})
    phone = await api.admin.patch("/v1/profiles/one", json={"phone": "+15555550100"})
    assert phone.status_code == 200  # its own phone is not "taken"


async def test_bad_profile_fields_are_refused_by_name(api: Api) -> None:
    cases = {
        "timezone": {"timezone": "Mars/Olympus"},
        "phone": {"phone": "0123"},
        "locale": {"locale": "not a locale"},
        "attributes": {"attributes": {"a": "nul\u0000inside"}},
        "email": {"email": "not-an-email"},
    }
    for field, body in cases.items():
        answer = await api.admin.put("/v1/profiles/p", json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert any(d["loc"][:2] == ["body", field] for d in answer.json()["error"]["details"])
    assert (await api.admin.get("/v1/profiles/p")).status_code == 404


async def test_profiles_are_listed_by_page(api: Api) -> None:
    for n in range(7):
        await api.admin.put(f"/v1/profiles/p{n}", json={})
    first = (await api.admin.get("/v1/profiles", params={"limit": 4})).json()
    second = (
        await api.admin.get("/v1/profiles", params={"limit": 4, "cursor": first["next_cursor"]})
    ).json()
    assert [p["id"] for p in first["items"] + second["items"]] == [f"p{n}" for n in range(7)]
    assert second["next_cursor"] is None


async def test_erasing_a_profile_keeps_only_anonymous_counts(api: Api) -> None:
    await api.create_app("shop")
    await api.admin.put(
        "/v1/profiles/eve",
        json={"email": "eve@example.com", "phone": "+15555550199", "attributes": {"x": 1}},
    )
    token = "ef" * 32
    device = (
        await api.admin.post(
            "/v1/apps/shop/devices",
            json={"profile_id": "eve", "create_profile": True, "provider": "apns", "token": token},
        )
    ).json()
    await api.admin.put(
        "/v1/apps/shop/users/eve-in-app", json={"profile_id": "eve", "create_profile": True}
    )
    tracking = await sent_push(api.db, app_id="shop", profile_id="eve", device_id=device["id"])
    opened = await api.admin.post(
        "/v1/interactions", json={"tracking_id": tracking, "kind": "opened", "device_token": token}
    )
    assert opened.status_code == 202
    await api.admin.put("/v1/profiles/other", json={"email": "other@example.com"})

    erased = await api.admin.delete("/v1/profiles/eve")
    assert erased.status_code == 200, erased.text
    counts = erased.json()
    assert (
        counts["devices"],
        counts["mappings"],
        counts["deliveries"],
        counts["interactions"],
    ) == (
        1,
        1,
        1,
        1,
    )
    async with api.db.read() as session:
        assert [p.id for p in (await session.exec(select(Profile)))] == ["other"]
        assert (await session.exec(select(Device))).all() == []
        assert (await session.exec(select(AppUserMapping))).all() == []
        delivery = (await session.exec(select(Delivery))).one()
        interaction = (await session.exec(select(Interaction))).one()
        record = (await session.exec(select(Erasure))).one()
    # the ledger still counts one delivered push and one open, for an opaque profile
    assert delivery.profile_id.startswith("erased-")
    assert interaction.profile_id == delivery.profile_id
    assert interaction.details == {}
    assert "eve" not in delivery.profile_id
    assert record.devices == 1
    # the erasure record names nobody; a second erasure finds nothing
    listed = (await api.admin.get("/v1/erasures")).json()["items"]
    assert listed == [counts]
    assert "eve" not in str(listed)
    assert (await api.admin.delete("/v1/profiles/eve")).status_code == 404
    assert (
        await api.admin.post("/v1/profiles/lookup", json={"email": "eve@example.com"})
    ).status_code == 404
