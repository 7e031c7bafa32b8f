"""The console's schedules page in headless Chromium, on the real stack and both stores:
every schedule with its cadence and next times in its own time zone, paused and resumed
with its buttons (Temporal's own state changes), a firing's run linked."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import async_playwright, expect

from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY, assert_labelled
from tests.engine.test_schedules import at_least_runs, schedule
from tests.scene import PATIENCE_S, SceneFactory, journey, push
from tidings.api.app import create_app
from tidings.console.temporal import provide_client


async def test_the_schedules_page_lists_next_times_and_pauses_and_resumes(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        await s.profile("pat")
        definition = journey(push("one"))
        saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
        assert saved.status_code == 201, saved.text
        schedule_id = f"morning-{store}"
        body: dict[str, Any] = {
            "journey_id": definition.id,
            "kind": "daily",
            "at": "08:15",
            "time_zone": "Asia/Tokyo",
            "audience": {"profile_ids": ["pat"]},
            "id": schedule_id,
        }
        created = await s.stack.http.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.text
        fired = await s.stack.http.post(f"/v1/schedules/{schedule_id}/trigger")
        assert fired.status_code == 200, fired.text
        (run,) = await at_least_runs(s, schedule_id, 1)

        async def noted() -> bool:
            return bool((await schedule(s, schedule_id))["last_run_id"] == run.id)

        await s.until(noted, "the firing's run noted on its schedule")
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        try:
            async with served(app) as api, async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox"]
                )
                page = await browser.new_page(viewport={"width": 1366, "height": 768})
                page.set_default_timeout(PATIENCE_S * 1000)
                await page.goto(f"{api.url}/console/schedules")
                await expect(page).to_have_url(re.compile(r"/console/login"))
                await page.get_by_label("Admin key").fill(ADMIN_KEY)
                await page.get_by_role("button", name="Log in").click()
                await expect(page.get_by_role("heading", name="Schedules")).to_be_visible()

                row = page.locator(f"#schedule-{schedule_id}")
                await expect(row).to_contain_text("every day at 08:15 (Asia/Tokyo)")
                await expect(row).to_contain_text("1 listed profile")
                await expect(row.locator(".status")).to_have_text("active")
                times = await row.locator("time").all_inner_texts()
                assert len(times) == 3
                tokyo = ZoneInfo("Asia/Tokyo")
                expected = [
                    f"{datetime.fromisoformat(t).astimezone(tokyo):%Y-%m-%d %H:%M:%S %Z}"
                    for t in (await schedule(s, schedule_id))["next_times"]
                ]
                assert times == expected
                assert all(" 08:15:00 JST" in t for t in times)
                await expect(row.get_by_role("link", name=run.id)).to_be_visible()
                await assert_labelled(page)
                await page.screenshot(path=artifact(f"schedules-{store}"), full_page=True)

                await row.get_by_role("button", name="Pause").click()
                await expect(page.get_by_role("status")).to_contain_text(
                    f"Schedule {schedule_id} paused"
                )
                await expect(row.locator(".status")).to_have_text("paused")
                assert (await schedule(s, schedule_id))["paused"] is True
                await page.screenshot(path=artifact(f"schedules-paused-{store}"), full_page=True)

                await row.get_by_role("button", name="Resume").click()
                await expect(page.get_by_role("status")).to_contain_text("resumed")
                await expect(row.locator(".status")).to_have_text("active")
                assert (await schedule(s, schedule_id))["paused"] is False

                await row.get_by_role("link", name=run.id).click()
                await expect(page).to_have_url(re.compile(f"/console/runs/{run.id}"))
                await browser.close()
        finally:
            await s.stack.http.delete(f"/v1/schedules/{schedule_id}")
