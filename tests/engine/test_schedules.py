"""Journeys on a schedule, on the real stack: Temporal Schedules fire the ScheduledRun
workflow, each firing a run of its own whose pushes reach the simulators, its audience
resolved when it fires; pause stops firings, the list shows the next times, bad input is
refused naming the field."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from tests.engine.test_designer_cli import invoke
from tests.scene import APP, Scene, SceneFactory, in_a_fresh_window, journey, push
from tidings.cli.app import app as tidings_cli
from tidings.store.models import JourneyRun


async def saved_journey(s: Scene, **settings: Any) -> str:
    definition = journey(push("one"), **settings)
    answer = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
    assert answer.status_code == 201, answer.text
    return definition.id


async def create(s: Scene, **body: Any) -> dict[str, Any]:
    answer = await s.stack.http.post("/v1/schedules", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def schedule(s: Scene, schedule_id: str) -> dict[str, Any]:
    answer = await s.stack.http.get(f"/v1/schedules/{schedule_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def runs_of(s: Scene, schedule_id: str) -> list[JourneyRun]:
    async with s.db.read() as session:
        rows = await session.exec(select(JourneyRun).order_by(col(JourneyRun.started_at)))
        return [r for r in rows.all() if (r.entry or {}).get("schedule") == schedule_id]


async def at_least_runs(s: Scene, schedule_id: str, count: int) -> list[JourneyRun]:
    found: list[JourneyRun] = []

    async def check() -> bool:
        found[:] = await runs_of(s, schedule_id)
        return len(found) >= count

    await s.until(check, f"{count} runs of schedule {schedule_id}")
    return found


async def test_a_recurring_schedule_fires_runs_for_the_audience_of_the_moment(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        (x_token,) = await s.profile("x", attributes={"plan": "pro"})
        (y_token,) = await s.profile("y", attributes={"plan": "free"})
        journey_id = await saved_journey(s)
        created = await create(
            s,
            journey_id=journey_id,
            kind="every",
            every="2s",
            audience={"where": ["plan=pro"]},
        )
        schedule_id = created["id"]
        try:
            assert created["when"] == "every 2s"
            assert created["paused"] is False
            assert len(created["next_times"]) == 3
            first = (await at_least_runs(s, schedule_id, 1))[0]
            await s.delivered(first.id, "one", "x")
            assert [r.token for r in s.sims.apns.accepted(token=x_token)]
            assert s.sims.apns.accepted(token=y_token) == []

            # the audience is resolved when the schedule fires: y joins the later firings
            answer = await s.stack.http.put("/v1/profiles/y", json={"attributes": {"plan": "pro"}})
            assert answer.status_code in (200, 201), answer.text
            delivered_to_y: list[str] = []

            async def y_reached() -> bool:
                for run in await runs_of(s, schedule_id):
                    rows = await s.ledger(run.id)
                    if any(r.profile_id == "y" and r.status == "delivered" for r in rows):
                        delivered_to_y.append(run.id)
                        return True
                return False

            await s.until(y_reached, "a later firing reached y")
            assert delivered_to_y[0] != first.id
            assert s.sims.apns.accepted(token=y_token)
            # every firing is a run of its own, with its own id and report
            runs = await runs_of(s, schedule_id)
            assert len({r.id for r in runs}) == len(runs) >= 2
            report = await s.stack.http.get(f"/v1/runs/{first.id}/report")
            assert report.status_code == 200, report.text

            # pause stops firings: every firing Temporal made is a run, and no more come
            paused = (await s.stack.http.post(f"/v1/schedules/{schedule_id}/pause")).json()
            assert paused["paused"] is True
            fired = (await schedule(s, schedule_id))["firings"]
            await at_least_runs(s, schedule_id, fired)
            await asyncio.sleep(6)  # three intervals' worth of firings that must not come
            assert (await schedule(s, schedule_id))["firings"] == fired
            assert len(await runs_of(s, schedule_id)) == fired

            resumed = (await s.stack.http.post(f"/v1/schedules/{schedule_id}/resume")).json()
            assert resumed["paused"] is False
            await at_least_runs(s, schedule_id, fired + 1)
            listed = (await s.stack.http.get("/v1/schedules")).json()["items"]
            mine = [item for item in listed if item["id"] == schedule_id]
            assert len(mine) == 1
            assert mine[0]["last_run_id"] is not None
        finally:
            deleted = await s.stack.http.delete(f"/v1/schedules/{schedule_id}")
            assert deleted.status_code == 204, deleted.text
        assert (await s.stack.http.get(f"/v1/schedules/{schedule_id}")).status_code == 404


async def test_a_one_off_schedule_fires_once_at_its_local_time(scene: SceneFactory) -> None:
    async with scene() as s:
        (token,) = await s.profile("solo")
        journey_id = await saved_journey(s)
        zone = ZoneInfo("Asia/Kolkata")
        lead = timedelta(seconds=4)

        async def create_at(when: datetime) -> dict[str, Any]:
            return await create(
                s,
                journey_id=journey_id,
                kind="once",
                at=when.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"),
                time_zone="Asia/Kolkata",
                audience={"profile_ids": ["solo"]},
            )

        async def delete(created: dict[str, Any]) -> None:
            answer = await s.stack.http.delete(f"/v1/schedules/{created['id']}")
            assert answer.status_code == 204, answer.text

        # its time computed as it is created, and still ahead once it has been
        created, when = await in_a_fresh_window(
            lambda now: now + lead,
            create_at,
            still_holds=lambda at, now: now <= at - lead / 2,
            undo=delete,
        )
        schedule_id = created["id"]
        try:
            (next_time,) = created["next_times"]
            assert datetime.fromisoformat(next_time) == when.replace(microsecond=0)
            (run,) = await at_least_runs(s, schedule_id, 1)
            await s.delivered(run.id, "one", "solo")
            assert len(s.sims.apns.accepted(token=token)) == 1

            async def done() -> bool:
                return bool((await schedule(s, schedule_id))["firings"] == 1)

            await s.until(done, "Temporal counted the one firing")
            after = await schedule(s, schedule_id)
            assert after["next_times"] == []
            assert after["last_run_id"] == run.id
        finally:
            await s.stack.http.delete(f"/v1/schedules/{schedule_id}")


async def test_the_list_shows_next_times_in_the_schedules_time_zone(scene: SceneFactory) -> None:
    async with scene() as s:
        journey_id = await saved_journey(s)
        daily = await create(
            s, journey_id=journey_id, kind="daily", at="09:30", time_zone="Europe/Paris"
        )
        await create(
            s,
            journey_id=journey_id,
            kind="weekly",
            at="07:05",
            weekday="monday",
            time_zone="America/New_York",
            id="weekly-digest",
        )
        try:
            answer = await s.stack.http.get("/v1/schedules", params={"journey_id": journey_id})
            assert answer.status_code == 200, answer.text
            listed = {item["id"]: item for item in answer.json()["items"]}
            assert set(listed) == {daily["id"], "weekly-digest"}
            # by id, a page at a time
            first = await s.stack.http.get(
                "/v1/schedules", params={"journey_id": journey_id, "limit": 1}
            )
            (one,) = first.json()["items"]
            second = await s.stack.http.get(
                "/v1/schedules",
                params={
                    "journey_id": journey_id,
                    "limit": 1,
                    "cursor": first.json()["next_cursor"],
                },
            )
            (two,) = second.json()["items"]
            assert [one["id"], two["id"]] == sorted(listed)
            assert second.json()["next_cursor"] is None

            paris = [
                datetime.fromisoformat(t).astimezone(ZoneInfo("Europe/Paris"))
                for t in listed[daily["id"]]["next_times"]
            ]
            assert len(paris) == 3
            assert all((t.hour, t.minute) == (9, 30) for t in paris)
            assert [(b.date() - a.date()).days for a, b in itertools.pairwise(paris)] == [1, 1]
            assert paris[0] > datetime.now(UTC)
            assert listed[daily["id"]]["when"] == "every day at 09:30 (Europe/Paris)"

            new_york = [
                datetime.fromisoformat(t).astimezone(ZoneInfo("America/New_York"))
                for t in listed["weekly-digest"]["next_times"]
            ]
            assert all((t.weekday(), t.hour, t.minute) == (0, 7, 5) for t in new_york)
            assert [(b.date() - a.date()).days for a, b in itertools.pairwise(new_york)] == [7, 7]

            again = await s.stack.http.post(
                "/v1/schedules",
                json={
                    "journey_id": journey_id,
                    "kind": "daily",
                    "at": "10:00",
                    "id": "weekly-digest",
                },
            )
            assert again.status_code == 409, again.text
        finally:
            for schedule_id in (daily["id"], "weekly-digest"):
                await s.stack.http.delete(f"/v1/schedules/{schedule_id}")
        left = await s.stack.http.get("/v1/schedules", params={"journey_id": journey_id})
        assert left.json()["items"] == []


def problem_field(answer: Any) -> str:
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["error"]["details"]
    return ".".join(detail["loc"][1:])


async def test_bad_schedules_are_refused_naming_the_field(scene: SceneFactory) -> None:
    async with scene() as s:
        journey_id = await saved_journey(s)
        good: dict[str, Any] = {
            "journey_id": journey_id,
            "kind": "daily",
            "at": "09:00",
            "time_zone": "UTC",
        }
        cases: list[tuple[dict[str, Any], str]] = [
            ({"journey_id": "no-such-journey"}, "journey_id"),
            ({"version": 7}, "version"),
            ({"time_zone": "Mars/Olympus"}, "time_zone"),
            ({"time_zone": "../../etc/passwd"}, "time_zone"),
            ({"at": "25:00"}, "at"),
            ({"at": "9am"}, "at"),
            ({"kind": "once", "at": "2020-01-01T09:00"}, "at"),
            ({"kind": "once", "at": "2030-02-30T09:00"}, "at"),
            ({"kind": "weekly"}, "weekday"),
            ({"weekday": "monday"}, "weekday"),
            ({"kind": "every", "at": None, "every": "soon"}, "every"),
            ({"kind": "every", "at": None, "every": "0s"}, "every"),
            ({"kind": "hourly"}, "kind"),
            ({"audience": {"app": "no-such-app"}}, "audience.app"),
            ({"audience": {"where": ["plan"]}}, "audience.where.0"),
        ]
        for change, field in cases:
            answer = await s.stack.http.post("/v1/schedules", json=good | change)
            assert problem_field(answer) == field, (change, answer.text)
        triggered = journey(push("one"), trigger={"event": "signed_up"})
        saved = await s.stack.http.post("/v1/journeys", json=triggered.model_dump(mode="json"))
        assert saved.status_code == 201, saved.text
        answer = await s.stack.http.post("/v1/schedules", json=good | {"journey_id": triggered.id})
        assert problem_field(answer) == "journey_id"
        assert (await s.stack.http.get("/v1/schedules")).json()["items"] == []
        for verb in ("pause", "resume", "trigger"):
            missing = await s.stack.http.post(f"/v1/schedules/nothing-here/{verb}")
            assert missing.status_code == 404, missing.text
        assert (await s.stack.http.delete("/v1/schedules/nothing-here")).status_code == 404


async def test_a_firing_that_cannot_start_says_why_and_the_schedule_goes_on(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("z", attributes={"plan": "free"})
        journey_id = await saved_journey(s)
        created = await create(
            s,
            journey_id=journey_id,
            kind="daily",
            at="04:00",
            audience={"where": ["plan=enterprise"], "app": APP},
        )
        schedule_id = created["id"]
        try:
            fired = await s.stack.http.post(f"/v1/schedules/{schedule_id}/trigger")
            assert fired.status_code == 200, fired.text

            async def refused() -> bool:
                return (await schedule(s, schedule_id))["last_error"] is not None

            await s.until(refused, "the firing recorded why it started nothing")
            after = await schedule(s, schedule_id)
            assert "no profile matches" in after["last_error"]
            assert after["last_run_id"] is None
            assert after["paused"] is False
            assert len(after["next_times"]) == 3
            assert await runs_of(s, schedule_id) == []
        finally:
            await s.stack.http.delete(f"/v1/schedules/{schedule_id}")


async def test_the_schedules_commands_create_list_pause_resume_trigger_and_delete(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("cli-x")
        journey_id = await saved_journey(s)
        created = await invoke(
            s,
            tidings_cli,
            "schedules",
            "create",
            journey_id,
            "--weekly",
            "friday@18:30",
            "--tz",
            "Europe/Lisbon",
            "--profile",
            "cli-x",
            "--id",
            "friday-cli",
        )
        assert created.exit_code == 0, created.output
        assert "every friday at 18:30 (Europe/Lisbon)" in created.output
        try:
            listed = await invoke(s, tidings_cli, "schedules", "list", "--json")
            assert listed.exit_code == 0, listed.output
            (mine,) = [v for v in json.loads(listed.output) if v["id"] == "friday-cli"]
            lisbon = datetime.fromisoformat(mine["next_times"][0]).astimezone(
                ZoneInfo("Europe/Lisbon")
            )
            assert (lisbon.weekday(), lisbon.hour, lisbon.minute) == (4, 18, 30)
            table = await invoke(s, tidings_cli, "schedules", "list")
            assert "friday-cli" in table.output
            assert "active" in table.output

            paused = await invoke(s, tidings_cli, "schedules", "pause", "friday-cli")
            assert paused.exit_code == 0, paused.output
            assert (await schedule(s, "friday-cli"))["paused"] is True
            # fired by hand while paused: a run all the same
            fired = await invoke(s, tidings_cli, "schedules", "trigger", "friday-cli")
            assert fired.exit_code == 0, fired.output
            (run,) = await at_least_runs(s, "friday-cli", 1)
            await s.delivered(run.id, "one", "cli-x")
            resumed = await invoke(s, tidings_cli, "schedules", "resume", "friday-cli")
            assert resumed.exit_code == 0, resumed.output
            assert (await schedule(s, "friday-cli"))["paused"] is False

            bad = await invoke(
                s, tidings_cli, "schedules", "create", journey_id, "--daily", "9h", "--tz", "UTC"
            )
            assert bad.exit_code == 1
            assert "at:" in bad.output
            unknown = await invoke(s, tidings_cli, "schedules", "pause", "no-such")
            assert unknown.exit_code == 1
            assert "no schedule 'no-such'" in unknown.output
        finally:
            deleted = await invoke(s, tidings_cli, "schedules", "delete", "friday-cli")
            assert deleted.exit_code == 0, deleted.output
        assert (await s.stack.http.get("/v1/schedules/friday-cli")).status_code == 404
