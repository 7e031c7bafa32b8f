"""Segments compiled to SQL, on SQLite and PostgreSQL: every condition type selects what it
says, attribute tests agree with the predicates condition nodes evaluate in Python, the
combinators compose, and a preview counts what the keyset pages read."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.journeys.predicates import AttributePredicate, attribute_matches
from tidings.journeys.segments import parse_segment
from tidings.journeys.validation import parse_definition
from tidings.runs.errors import StartError
from tidings.runs.segments import create_segment, preview_definition, update_segment
from tidings.runs.start import record_run, recorded_run
from tidings.store.db import Database
from tidings.store.models import (
    App,
    Delivery,
    Device,
    DeviceState,
    Interaction,
    InteractionKind,
    InteractionStatus,
    JourneyRun,
    Profile,
    Provider,
    RunMember,
    Segment,
)
from tidings.store.segments import count_matching, matching_ids
from tidings.store.types import utcnow

_numbers = itertools.count(1)

# one profile per attribute value; p00 has no attribute at all
ATTRIBUTE_VALUES: list[Any] = [
    "pro",
    "Pro",
    "a",
    "apple",
    "Zebra",
    "3",
    "",
    3,
    3.0,
    10,
    -2.5,
    True,
    False,
    None,
    ["pro", "x"],
    [3, True],
    [1, "3"],
    {"w": "pro"},
    {"w": 7},
]
PREDICATES: list[dict[str, Any]] = [
    {"op": "eq", "value": "pro"},
    {"op": "eq", "value": 3},
    {"op": "eq", "value": 1},
    {"op": "eq", "value": True},
    {"op": "eq", "value": False},
    {"op": "eq", "value": "3"},
    {"op": "ne", "value": "pro"},
    {"op": "ne", "value": 3},
    {"op": "in", "value": ["pro", 3, False]},
    {"op": "not_in", "value": ["pro", "a"]},
    {"op": "gt", "value": 3},
    {"op": "gte", "value": 3},
    {"op": "lt", "value": 0},
    {"op": "lt", "value": "b"},
    {"op": "lte", "value": "Pro"},
    {"op": "gt", "value": "Z"},
    {"op": "contains", "value": "p"},
    {"op": "contains", "value": "pro"},
    {"op": "contains", "value": 3},
    {"op": "contains", "value": True},
    {"op": "contains", "value": ""},
    {"op": "exists"},
    {"op": "missing"},
]


async def add_profiles(db: Database, profiles: dict[str, dict[str, Any]]) -> None:
    async with db.write() as session:
        for profile_id, fields in profiles.items():
            session.add(Profile(id=profile_id, **fields))


async def selected(db: Database, definition: dict[str, Any], **kwargs: Any) -> set[str]:
    parsed = parse_segment(definition)
    as_of = kwargs.get("as_of", utcnow())
    async with db.read() as session:
        ids = await matching_ids(session, parsed, as_of, after=None, limit=10_000)
        count = await count_matching(session, parsed, as_of)
    assert count == len(ids)
    return set(ids)


@pytest.fixture
async def valued(db: Database) -> dict[str, dict[str, Any]]:
    """A profile per attribute value, and the attributes of each."""
    profiles: dict[str, dict[str, Any]] = {"p00": {}}
    for index, value in enumerate(ATTRIBUTE_VALUES, start=1):
        profiles[f"p{index:02d}"] = {"v": value, "n": {"w": value}}
    await add_profiles(db, {pid: {"attributes": attrs} for pid, attrs in profiles.items()})
    return profiles


@pytest.mark.parametrize("name", ["v", "n.w"])
async def test_attribute_tests_select_what_condition_nodes_would(
    db: Database, valued: dict[str, dict[str, Any]], name: str
) -> None:
    for predicate in PREDICATES:
        expected = {
            pid
            for pid, attributes in valued.items()
            if attribute_matches(AttributePredicate(attribute=name, **predicate), attributes)
        }
        got = await selected(db, {"attribute": {"name": name, **predicate}})
        assert got == expected, predicate
        negated = await selected(db, {"not": {"attribute": {"name": name, **predicate}}})
        assert negated == set(valued) - expected, predicate


async def test_the_where_shorthand_reads_as_a_filter(
    db: Database, valued: dict[str, dict[str, Any]]
) -> None:
    assert await selected(db, {"attribute": "v=pro"}) == {"p01"}
    assert await selected(db, {"attribute": "v>=10"}) == {"p10"}
    assert await selected(db, {"attribute": "n.w?"}) == set(valued) - {"p00", "p14"}


async def test_profile_fields(db: Database) -> None:
    now = utcnow()
    await add_profiles(
        db,
        {
            "ana": {
                "email": "ana@example.com",
                "locale": "fr-FR",
                "timezone": "Europe/Paris",
                "created_at": now - timedelta(days=2),
            },
            "bob": {
                "email": "bob@other.org",
                "locale": "en-GB",
                "created_at": now - timedelta(days=40),
            },
            "cy": {"phone": "+33600000000", "created_at": now - timedelta(days=400)},
        },
    )
    profile = "profile"
    assert await selected(
        db, {profile: {"field": "email", "op": "contains", "value": "example"}}
    ) == {"ana"}
    assert await selected(
        db, {profile: {"field": "locale", "op": "in", "value": ["fr-FR", "en-GB"]}}
    ) == {"ana", "bob"}
    assert await selected(db, {profile: {"field": "locale", "op": "ne", "value": "fr-FR"}}) == {
        "bob",
        "cy",
    }
    assert await selected(db, {profile: {"field": "timezone", "op": "missing"}}) == {"bob", "cy"}
    assert await selected(db, {profile: {"field": "phone", "op": "exists"}}) == {"cy"}
    assert await selected(db, {profile: {"field": "id", "op": "gt", "value": "b"}}) == {"bob", "cy"}
    assert await selected(
        db, {profile: {"field": "created_at", "op": "within_days", "value": 30}}
    ) == {"ana"}
    cutoff = (now - timedelta(days=100)).isoformat()
    assert await selected(db, {profile: {"field": "created_at", "op": "lt", "value": cutoff}}) == {
        "cy"
    }


async def add_devices(db: Database, rows: list[tuple[str, str, str, str]]) -> None:
    """(profile, app, provider, state) rows; their apps and profiles made as needed."""
    async with db.write() as session:
        for app_id in sorted({row[1] for row in rows}):
            if await session.get(App, app_id) is None:
                session.add(App(id=app_id, name=app_id))
        for profile_id in sorted({row[0] for row in rows}):
            if await session.get(Profile, profile_id) is None:
                session.add(Profile(id=profile_id))
        await session.flush()
        for profile_id, app_id, provider, state in rows:
            token = f"{next(_numbers):064x}"
            session.add(
                Device(
                    app_id=app_id,
                    profile_id=profile_id,
                    provider=Provider(provider),
                    token=token,
                    state=DeviceState(state),
                )
            )


async def test_device_conditions(db: Database) -> None:
    await add_devices(
        db,
        [
            ("ios", "shop", "apns", "valid"),
            ("droid", "shop", "fcm", "valid"),
            ("gone", "shop", "apns", "invalid"),
            ("elsewhere", "news", "apns", "valid"),
            ("doubted", "shop", "fcm", "quarantined"),
        ],
    )
    await add_profiles(db, {"nothing": {}})
    assert await selected(db, {"device": {"app": "shop"}}) == {"ios", "droid"}
    assert await selected(db, {"device": {}}) == {"ios", "droid", "elsewhere"}
    assert await selected(db, {"device": {"provider": "apns"}}) == {"ios", "elsewhere"}
    assert await selected(db, {"device": {"app": "shop", "state": "invalid"}}) == {"gone"}
    assert await selected(db, {"device": {"state": "quarantined"}}) == {"doubted"}
    assert await selected(db, {"device": {"state": "any", "app": "shop"}}) == {
        "ios",
        "droid",
        "gone",
        "doubted",
    }
    assert await selected(db, {"not": {"device": {"state": "any"}}}) == {"nothing"}


async def add_interaction(
    db: Database, profile_id: str, kind: str, days_ago: float, app_id: str = "shop"
) -> None:
    n = next(_numbers)
    async with db.write() as session:
        session.add(
            Interaction(
                scope=app_id,
                event_id=f"e{n}",
                tracking_id=f"t{n}",
                kind=InteractionKind(kind),
                status=InteractionStatus.MATCHED,
                app_id=app_id,
                profile_id=profile_id,
                occurred_at=utcnow() - timedelta(days=days_ago),
            )
        )


async def test_interaction_conditions_count_back_from_the_moment_given(db: Database) -> None:
    await add_profiles(db, {p: {} for p in ("opener", "clicker", "old", "news", "quiet")})
    await add_interaction(db, "opener", "opened", 1)
    await add_interaction(db, "clicker", "clicked", 2)
    await add_interaction(db, "old", "opened", 20)
    await add_interaction(db, "news", "opened", 1, app_id="news")
    await add_interaction(db, "quiet", "delivered", 1)
    opened_lately = {"interaction": {"kind": "opened", "within_days": 7}}
    # a click implies an open
    assert await selected(db, opened_lately) == {"opener", "clicker", "news"}
    assert await selected(db, {"interaction": {"kind": "opened"}}) == {
        "opener",
        "clicker",
        "old",
        "news",
    }
    assert await selected(db, {"interaction": {"kind": "clicked", "within_days": 7}}) == {"clicker"}
    assert await selected(
        db, {"interaction": {"kind": "opened", "within_days": 7, "app": "shop"}}
    ) == {
        "opener",
        "clicker",
    }
    assert await selected(db, {"interaction": {"kind": "delivered", "within_days": 3}}) == {"quiet"}
    # the window counts back from as_of, not from the query's time
    earlier = utcnow() - timedelta(days=15)
    assert await selected(db, opened_lately, as_of=earlier) == {"old"}


async def test_run_conditions(db: Database) -> None:
    await add_profiles(db, {p: {} for p in ("listed", "pushed", "other", "never")})
    now = utcnow()
    async with db.write() as session:
        for run_id, journey_id in (("run-a", "welcome"), ("run-b", "promo")):
            session.add(
                JourneyRun(
                    id=run_id, journey_id=journey_id, definition={}, entry={}, started_at=now
                )
            )
        await session.flush()
        session.add(RunMember(run_id="run-a", profile_id="listed"))
        for profile_id, run_id, journey_id in (
            ("pushed", "run-a", "welcome"),
            ("other", "run-b", "promo"),
        ):
            n = next(_numbers)
            session.add(
                Delivery(
                    send_key=f"k{n}",
                    tracking_id=f"t{n}",
                    run_id=run_id,
                    workflow_id=f"{run_id}/cohort-000001",
                    journey_id=journey_id,
                    node_id="hello",
                    app_id="shop",
                    profile_id=profile_id,
                )
            )
    assert await selected(db, {"run": {"run_id": "run-a"}}) == {"listed", "pushed"}
    assert await selected(db, {"run": {"journey": "welcome"}}) == {"listed", "pushed"}
    assert await selected(db, {"run": {"journey": "promo"}}) == {"other"}
    assert await selected(
        db, {"not": {"any": [{"run": {"journey": "welcome"}}, {"run": {"run_id": "run-b"}}]}}
    ) == {"never"}


async def test_combinators_compose(db: Database) -> None:
    await add_devices(
        db,
        [
            ("a", "shop", "apns", "valid"),
            ("b", "shop", "fcm", "valid"),
            ("c", "news", "apns", "valid"),
        ],
    )
    async with db.write() as session:
        for profile_id, plan in (("a", "pro"), ("b", "free"), ("c", "pro")):
            row = await session.get(Profile, profile_id)
            assert row is not None
            row.attributes = {"plan": plan}
            session.add(row)
    await add_profiles(db, {"d": {"attributes": {"plan": "pro"}}})
    pro_in_shop = {"all": [{"attribute": "plan=pro"}, {"device": {"app": "shop"}}]}
    assert await selected(db, pro_in_shop) == {"a"}
    assert await selected(
        db, {"any": [{"attribute": "plan=free"}, {"device": {"app": "news"}}]}
    ) == {"b", "c"}
    assert await selected(db, {"not": pro_in_shop}) == {"b", "c", "d"}
    assert await selected(
        db, {"all": [{"attribute": "plan=pro"}, {"not": {"device": {"state": "any"}}}]}
    ) == {"d"}
    deep = {
        "any": [{"all": [{"not": {"not": {"attribute": "plan=free"}}}]}, {"all": [pro_in_shop]}]
    }
    assert await selected(db, deep) == {"a", "b"}


async def test_a_preview_counts_what_the_pages_read(db: Database) -> None:
    await add_profiles(db, {f"u{n:03d}": {"attributes": {"score": n}} for n in range(120)})
    definition = parse_segment({"attribute": {"name": "score", "op": "gte", "value": 35}})
    preview = await preview_definition(db, definition, sample=5)
    assert preview.count == 85
    assert preview.sample == [f"u{n:03d}" for n in range(35, 40)]
    paged: list[str] = []
    after = None
    async with db.read() as session:
        while True:
            page = await matching_ids(session, definition, preview.as_of, after=after, limit=20)
            paged += page
            if len(page) < 20:
                break
            after = page[-1]
    assert paged == [f"u{n:03d}" for n in range(35, 120)]
    assert datetime.now(UTC) >= preview.as_of


async def test_a_run_records_the_segment_as_it_was_and_reads_it_back(db: Database) -> None:
    await add_devices(db, [("a", "shop", "apns", "valid"), ("b", "shop", "apns", "valid")])
    await create_segment(db, "just-a", {"profile": {"field": "id", "op": "eq", "value": "a"}})
    definition = parse_definition(
        {
            "id": "welcome",
            "name": "Welcome",
            "app": "shop",
            "audience": {"segment": "just-a"},
            "nodes": [{"id": "end", "type": "exit"}],
        }
    )
    recorded = await record_run(db, definition, "run-1")
    assert recorded.audience.kind == "segment"
    assert recorded.audience.segment == "just-a"
    # an edit after the start changes nothing of the run
    await update_segment(db, "just-a", {"profile": {"field": "id", "op": "eq", "value": "b"}})
    async with db.read() as session:
        stored = await session.get(JourneyRun, "run-1")
    assert stored is not None
    assert recorded_run(stored).audience == recorded.audience
    spec = recorded.audience
    assert spec.definition is not None
    assert spec.as_of is not None
    async with db.read() as session:
        assert await matching_ids(session, spec.definition, spec.as_of, after=None, limit=5) == [
            "a"
        ]

    await remove_segment_row(db)
    with pytest.raises(StartError, match="segment 'just-a', which does not exist"):
        await record_run(db, definition, "run-2")


async def remove_segment_row(db: Database) -> None:
    """The segment gone from under the journey, as if removed before the journey was saved."""
    async with db.write() as session:
        row = await session.get(Segment, "just-a")
        assert row is not None
        await session.delete(row)
