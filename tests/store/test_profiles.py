"""Profiles and keyset pages (tidings.store.profiles, tidings.store.pages), on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import col, select

from tidings.store.db import Database
from tidings.store.devices import create_missing_profiles, register_device
from tidings.store.models import App, AppUserMapping, Profile, Provider
from tidings.store.pages import keyset
from tidings.store.profiles import (
    ContactTaken,
    find_by_contact,
    known_to_app,
    list_profiles,
    save_profile,
)
from tidings.store.types import utcnow


async def test_saving_twice_creates_once_and_a_patch_merges_attributes(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        _, created = await save_profile(
            session, "ann", {"attributes": {"plan": "pro", "age": 30}}, now, replace=False
        )
        assert created
    async with db.write() as session:
        _profile, created = await save_profile(
            session,
            "ann",
            {"attributes": {"age": None, "city": "Lyon"}, "locale": "fr"},
            now + timedelta(seconds=1),
            replace=False,
        )
        assert not created
    async with db.read() as session:
        stored = await session.get(Profile, "ann")
        count = len((await session.exec(select(Profile))).all())
    assert count == 1
    assert stored is not None
    assert stored.attributes == {"plan": "pro", "city": "Lyon"}
    assert stored.locale == "fr"


async def test_replacing_empties_every_personal_field_not_given(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        await save_profile(
            session,
            "ann",
            {"email": "Ann@Example.com", "locale": "fr", "attributes": {"plan": "pro"}},
            now,
            replace=False,
        )
    async with db.write() as session:
        await save_profile(session, "ann", {"timezone": "Europe/Paris"}, now, replace=True)
    async with db.read() as session:
        stored = await session.get(Profile, "ann")
    assert stored is not None
    assert (stored.email, stored.locale, stored.attributes, stored.timezone) == (
        None,
        None,
        {},
        "Europe/Paris",
    )


async def test_emails_are_found_in_any_case_and_a_taken_contact_is_refused(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        await save_profile(
            session,
            "ann",
            {"email": " Ann@Example.COM ", "phone": "+33600000001"},
            now,
            replace=False,
        )
    async with db.read() as session:
        by_email = await find_by_contact(session, email="ANN@example.com")
        by_phone = await find_by_contact(session, phone="+33600000001")
        nobody = await find_by_contact(session, email="bob@example.com")
    assert by_email is not None
    assert by_email.id == "ann"
    assert by_phone is not None
    assert by_phone.id == "ann"
    assert nobody is None
    for field, value in (("email", "ann@example.com"), ("phone", "+33600000001")):
        with pytest.raises(ContactTaken) as refused:
            async with db.write() as session:
                await save_profile(session, "bob", {field: value}, now, replace=False)
        assert refused.value.field == field
    async with db.read() as session:
        assert await session.get(Profile, "bob") is None  # the refusal wrote nothing
    async with db.write() as session:  # its own contact is no conflict
        await save_profile(session, "ann", {"email": "ann@example.com"}, now, replace=False)


async def test_profiles_page_in_id_order_without_gaps_or_repeats_under_inserts(
    db: Database,
) -> None:
    now = utcnow()
    async with db.write() as session:
        await create_missing_profiles(session, [f"p{n:02d}" for n in range(10)], now)
        await create_missing_profiles(session, ["p03"], now)  # already there: no second row
    seen: list[str] = []
    after: str | None = None
    while True:
        async with db.read() as session:
            page = await list_profiles(session, after=after, limit=4)
        seen += [p.id for p in page.items]
        if page.next_after is None:
            break
        after = page.next_after
        if after == "p03":
            # a profile added behind the cursor is not listed; one ahead of it is
            async with db.write() as session:
                await create_missing_profiles(session, ["p00a", "p99"], now)
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 11
    assert "p99" in seen
    assert "p00a" not in seen


async def test_an_empty_table_is_one_empty_page(db: Database) -> None:
    async with db.read() as session:
        page = await list_profiles(session, after=None, limit=10)
        empty = await keyset(session, select(Profile), col(Profile.id), "zzz", 10)
    assert (page.items, page.next_after) == ([], None)
    assert (empty.items, empty.next_after) == ([], None)


async def test_a_profile_is_known_to_an_app_by_a_device_or_a_user_mapping(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        for app_id in ("a", "b", "c"):
            session.add(App(id=app_id, name=app_id))
        await create_missing_profiles(session, ["ann"], now)
        await session.flush()
        await register_device(
            session,
            app_id="a",
            profile_id="ann",
            provider=Provider.APNS,
            token="ab" * 32,
            environment=None,
            now=now,
        )
        session.add(AppUserMapping(app_id="b", app_user_id="u-1", profile_id="ann", created_at=now))
    async with db.read() as session:
        assert await known_to_app(session, "a", "ann")
        assert await known_to_app(session, "b", "ann")
        assert not await known_to_app(session, "c", "ann")
        assert not await known_to_app(session, "a", "bob")
