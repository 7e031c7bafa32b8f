"""Journey events (tidings.store.journey_events) and user mappings (tidings.store.mappings),
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from activities.contracts import JourneyEventRecord
from tidings.store.db import Database
from tidings.store.devices import create_missing_profiles
from tidings.store.journey_events import running_entries, write_journey_events
from tidings.store.mappings import find_mapping, list_mappings, map_user, unmap_user
from tidings.store.models import App, AppUserMapping, JourneyEvent, JourneyRun, RunStatus
from tidings.store.types import utcnow


async def events_of(db: Database, run_id: str) -> list[JourneyEvent]:
    async with db.read() as session:
        rows = await session.exec(
            select(JourneyEvent)
            .where(col(JourneyEvent.run_id) == run_id)
            .order_by(col(JourneyEvent.id))
        )
        return list(rows.all())


async def write(db: Database, run_id: str, workflow_id: str, *events: JourneyEventRecord) -> None:
    async with db.write() as session:
        await write_journey_events(
            session,
            run_id=run_id,
            journey_id="j",
            workflow_id=workflow_id,
            occurred_at=utcnow(),
            events=list(events),
        )


async def test_a_retried_write_keeps_each_event_once_and_as_first_written(db: Database) -> None:
    until = utcnow() + timedelta(hours=1)
    first = [
        JourneyEventRecord("ann", "postponed", "k1", node_id="hi", until=until),
        JourneyEventRecord("bob", "entered", "k2"),
    ]
    await write(db, "run", "wf-1", *first)
    # the retried activity writes the same keys (one changed), and one more
    await write(
        db,
        "run",
        "wf-1",
        JourneyEventRecord("ann", "postponed", "k1", node_id="hi", detail="changed"),
        *first[1:],
        JourneyEventRecord("cy", "goal", "k3"),
    )
    # the same key in another workflow is another event
    await write(db, "run", "wf-2", JourneyEventRecord("dan", "entered", "k1"))
    rows = await events_of(db, "run")
    assert [(r.profile_id, r.kind, r.event_key) for r in rows] == [
        ("ann", "postponed", "wf-1:k1"),
        ("bob", "entered", "wf-1:k2"),
        ("cy", "goal", "wf-1:k3"),
        ("dan", "entered", "wf-2:k1"),
    ]
    assert rows[0].detail is None
    assert rows[0].until == until


async def test_an_empty_write_and_a_large_one_beyond_a_batch(db: Database) -> None:
    await write(db, "run", "wf")
    assert await events_of(db, "run") == []
    many = [JourneyEventRecord(f"p{n}", "entered", f"k{n}") for n in range(2500)]
    await write(db, "run", "wf", *many)
    await write(db, "run", "wf", *many)
    rows = await events_of(db, "run")
    assert len(rows) == 2500
    assert len({r.profile_id for r in rows}) == 2500


async def test_running_entries_are_the_running_runs_a_profile_entered(db: Database) -> None:
    async with db.write() as session:
        for run_id, status in (
            ("r-running", RunStatus.RUNNING),
            ("r-other", RunStatus.RUNNING),
            ("r-done", RunStatus.COMPLETED),
        ):
            session.add(JourneyRun(id=run_id, journey_id="j", definition={}, status=status))
    await write(db, "r-running", "r-running/c1", JourneyEventRecord("ann", "entered", "e"))
    await write(db, "r-done", "r-done/c1", JourneyEventRecord("ann", "entered", "e"))
    # ann only postponed in this running run: not an entry
    await write(db, "r-other", "r-other/c1", JourneyEventRecord("ann", "postponed", "p"))
    await write(db, "r-other", "r-other/c2", JourneyEventRecord("bob", "entered", "e"))
    async with db.read() as session:
        found = await running_entries(session, ["ann", "bob", "cy"])
        nobody = await running_entries(session, [])
    # one query for every profile asked about, each with its own entries
    assert {p: [(w, r.id) for w, r in entries] for p, entries in found.items()} == {
        "ann": [("r-running/c1", "r-running")],
        "bob": [("r-other/c2", "r-other")],
        "cy": [],
    }
    assert nobody == {}


async def test_a_user_maps_to_one_profile_remaps_and_pages_both_ways(db: Database) -> None:
    now = utcnow()
    async with db.write() as session:
        session.add(App(id="app", name="app"))
        session.add(App(id="other", name="other"))
        # a mapping names a profile that exists: mapping creates none
        await create_missing_profiles(session, ["ann", "bob", "cy"], now)
    async with db.write() as session:
        for n in range(5):
            await map_user(session, app_id="app", app_user_id=f"u{n}", profile_id="ann", now=now)
        await map_user(session, app_id="other", app_user_id="u0", profile_id="bob", now=now)
        moved = await map_user(session, app_id="app", app_user_id="u4", profile_id="cy", now=now)
        again = await map_user(session, app_id="app", app_user_id="u4", profile_id="cy", now=now)
    assert (moved.profile_id, again.profile_id) == ("cy", "cy")

    async def listed(profile_id: str | None, after: str | None, limit: int) -> list[str]:
        async with db.read() as session:
            page = await list_mappings(
                session, app_id="app", profile_id=profile_id, after=after, limit=limit
            )
        return [m.app_user_id for m in page.items] + ([page.next_after] if page.next_after else [])

    assert await listed(None, None, 10) == ["u0", "u1", "u2", "u3", "u4"]
    assert await listed("ann", None, 2) == ["u0", "u1", "u1"]  # two, and where to go on
    assert await listed("ann", "u1", 2) == ["u2", "u3"]  # the last page points nowhere
    assert await listed("cy", None, 10) == ["u4"]
    async with db.write() as session:
        assert await unmap_user(session, "app", "u0")
        assert not await unmap_user(session, "app", "u0")
    async with db.read() as session:
        assert await find_mapping(session, "app", "u0") is None
        kept = await find_mapping(session, "other", "u0")
        count = len((await session.exec(select(AppUserMapping))).all())
    assert kept is not None
    assert kept.profile_id == "bob"
    assert count == 5
