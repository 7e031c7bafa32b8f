"""The example that puts the four together, run as its header says on the real stack, on
SQLite and PostgreSQL: the segment `engaged` saved from its file, the journey
`weekly_digest.yaml` saved from its file (its app the scene's), a weekly schedule created
by the CLI and fired now; the firing's run reaches the segment's profiles only, each at its
best hour (the current one: the test chooses the time zone so that it has ten minutes left
when the schedule fires, and fires it anew if the hour turned meanwhile),
down one of the experiment's two branches, one push per device counted at the simulators.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from tests.engine.test_best_hour import MidHour, in_zone, mid_hour, opens_at, still_mid_hour
from tests.engine.test_designer_cli import invoke
from tests.engine.test_schedules import at_least_runs
from tests.scene import APP, Scene, SceneFactory, in_a_fresh_window, now_utc
from tests.store.opens import forget_opens, seed_opens
from tidings.cli.app import app as tidings_cli
from tidings.journeys.best_hour import HourChoice
from tidings.runs.cancel import cancel_run
from tidings.runs.report import run_report
from tidings.store.models import JourneyRun

OPENED = ["ana", "ben", "chloe", "dan", "gone"]


async def opened_at_the_hour(s: Scene, window: MidHour) -> None:
    """Every profile in the zone of the window, and the openers' opens at its hour on each
    of the last six days (none left from an earlier hour)."""
    _, zone, current = window
    await in_zone(s, zone, *OPENED, "silent")
    await forget_opens(s.db, OPENED)
    for name in OPENED:
        await seed_opens(s.db, APP, name, opens_at(zone, current, range(1, 7)))


EXAMPLES = Path(__file__).resolve().parents[2] / "tidings" / "journeys" / "examples"
SCHEDULE = "weekly-digest"


def example_commands() -> list[list[str]]:
    """The `tidings ...` commands the example's header gives, as argument lists."""
    header = (EXAMPLES / "weekly_digest.yaml").read_text().splitlines()
    return [
        line.lstrip("# ").split("#")[0].split()[1:]
        for line in header
        if line.lstrip("# ").startswith("tidings ")
    ]


async def test_the_weekly_digest_example_runs_as_its_header_says(
    scene: SceneFactory, tmp_path: Path
) -> None:
    commands = example_commands()
    assert [c[:2] for c in commands] == [
        ["segments", "create"],
        ["journeys", "save"],
        ["schedules", "create"],
        ["schedules", "list"],
        ["runs", "report"],
    ]
    definition = yaml.safe_load((EXAMPLES / "weekly_digest.yaml").read_text())
    # the scene's app stands in for the demo's
    definition["app"] = APP
    journey_file = tmp_path / "weekly_digest.yaml"
    journey_file.write_text(yaml.safe_dump(definition))

    async with scene() as s:
        engaged = ["ana", "ben", "chloe", "dan"]
        tokens: dict[str, list[str]] = {}
        for name in engaged:
            devices = ("apns", "fcm") if name == "ana" else ("apns",)
            tokens[name] = await s.profile(name, devices=devices, attributes={"first_name": name})
        # reachable but never opened, and opened but unreachable: outside the segment
        (silent,) = await s.profile("silent")
        await s.profile("gone", devices=())
        # the hours of the opens are set again as the schedule fires (below)
        await opened_at_the_hour(s, mid_hour(now_utc()))

        segment_create = commands[0]
        segment_create[-1] = str(EXAMPLES / "segments" / "engaged.yaml")
        saved = await invoke(s, tidings_cli, *segment_create)
        assert saved.exit_code == 0, saved.output
        preview = await s.stack.http.post("/v1/segments/engaged/preview")
        assert preview.status_code == 200, preview.text
        assert preview.json()["count"] == len(engaged)

        journey_save = commands[1]
        journey_save[-1] = str(journey_file)
        saved = await invoke(s, tidings_cli, *journey_save)
        assert saved.exit_code == 0, saved.output

        created = await invoke(s, tidings_cli, *commands[2], "--id", SCHEDULE)
        assert created.exit_code == 0, created.output
        try:
            answer = await s.stack.http.get(f"/v1/schedules/{SCHEDULE}")
            assert answer.status_code == 200, answer.text
            shown = answer.json()
            # the schedule names no audience: each firing takes the journey's own segment
            assert not any(shown["audience"].values()), shown["audience"]
            paris = ZoneInfo("Europe/Paris")
            next_times = [datetime.fromisoformat(t).astimezone(paris) for t in shown["next_times"]]
            assert [(t.weekday(), t.hour, t.minute) for t in next_times] == [(0, 8, 0)] * 3
            assert next_times[1] - next_times[0] >= timedelta(days=6, hours=23)
            listed = await invoke(s, tidings_cli, *commands[3])
            assert listed.exit_code == 0, listed.output
            assert SCHEDULE in listed.output

            # fire it now, besides its Mondays, the hour of the opens taken as it fires
            fired_runs: list[JourneyRun] = []

            async def fire(window: MidHour) -> JourneyRun:
                await opened_at_the_hour(s, window)
                fired = await s.stack.http.post(f"/v1/schedules/{SCHEDULE}/trigger")
                assert fired.status_code in (200, 202), fired.text
                found = await at_least_runs(s, SCHEDULE, len(fired_runs) + 1)
                fired_runs.append(found[-1])
                return found[-1]

            async def take_back(run: JourneyRun) -> None:
                await cancel_run(s.client, s.db, run.id)
                s.sims.reset()  # the next firing's sends are the only ones counted

            run, (_, _, current) = await in_a_fresh_window(
                mid_hour, fire, still_holds=still_mid_hour, undo=take_back
            )
            rows = {}
            for name in engaged:

                async def sent(name: str = name) -> bool:
                    ledger = await s.ledger(run.id)
                    mine = [r for r in ledger if r.profile_id == name]
                    if mine and all(r.status == "delivered" for r in mine):
                        rows[name] = mine
                        return len(mine) == len(tokens[name])
                    return False

                await s.until(sent, f"{name}'s digest delivered to each device")
        finally:
            deleted = await s.stack.http.delete(f"/v1/schedules/{SCHEDULE}")
            assert deleted.status_code == 204, deleted.text

        # the segment's profiles only, one push a device, on one of the two subject lines
        ledger = await s.ledger(run.id)
        assert {r.profile_id for r in ledger} == set(engaged)
        for name in engaged:
            (node,) = {r.node_id for r in rows[name]}
            assert node in ("plain", "teaser")
        for name, device_tokens in tokens.items():
            for token in device_tokens:
                accepted = (
                    s.sims.apns.accepted(token=token)
                    if not token.startswith("fcm-")
                    else s.sims.fcm.accepted(token=token)
                )
                assert len(accepted) == 1, (name, token)
        assert s.sims.apns.records(token=silent) == []

        # each went on at its own best hour, the current one, chosen from its own opens
        choices = [
            HourChoice.from_detail(e.detail or "")
            for e in await s.journey_events(run.id)
            if e.kind == "best_hour"
        ]
        assert sorted((c.hour, c.source.value) for c in choices) == [(current, "profile")] * 4
        report = await run_report(s.db, run.id)
        (wait,) = report.best_hours
        assert wait.by_source == {"profile": 4, "app": 0, "default": 0}
        (split,) = report.splits
        assert split.experiment is not None
        assert sum(b.profiles for b in split.experiment.branches) == len(engaged)
        assert split.experiment.verdict == "not_yet"  # 200 a branch before any verdict

        report_command = [*commands[4][:-1], run.id]
        printed = await invoke(s, tidings_cli, *report_command)
        assert printed.exit_code == 0, printed.output
        assert "best hour best: 4 profiles (profile 4, app 0, default 0)" in " ".join(
            printed.output.split()
        )
