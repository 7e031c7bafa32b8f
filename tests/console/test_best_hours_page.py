"""The run page shows the hours a best_hour wait chose, in headless Chromium, on the real stack
and both stores: one row per local hour chosen, with how many profiles each source (their own
opens, the app's, the default) sent there, the numbers of the run's report."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.async_api import async_playwright, expect

from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY, assert_labelled
from tests.engine.test_best_hour import opens_at, zone_mid_hour
from tests.scene import APP, PATIENCE_S, SceneFactory, journey, push
from tests.store.opens import seed_opens
from tidings.api.app import create_app
from tidings.console.temporal import provide_client
from tidings.runs.cancel import cancel_run


async def test_the_run_page_shows_the_hours_chosen_and_their_sources(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        zone = zone_mid_hour(datetime.now(UTC))
        current = datetime.now(zone).hour
        own = (current + 7) % 24
        default = (current + 11) % 24
        for profile_id in ("owl", "lark", "newcomer"):
            await s.profile(profile_id, timezone=zone.key)
        for profile_id in ("owl", "lark"):
            await seed_opens(s.db, APP, profile_id, opens_at(zone, own, range(1, 6)))
        started = await s.start_journey(
            journey(
                {"id": "best", "type": "best_hour", "default_hour": default, "next": "hi"},
                push("hi"),
            ),
            ["owl", "lark", "newcomer"],
        )

        async def chosen() -> bool:
            events = await s.journey_events(started.run_id)
            return len([e for e in events if e.kind == "best_hour"]) == 3

        await s.until(chosen, "an hour chosen for each profile")
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(PATIENCE_S * 1000)
            await page.goto(f"{api.url}/console/runs/{started.run_id}")
            await expect(page).to_have_url(re.compile(r"/console/login"))
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_role("button", name="Log in").click()
            await page.goto(f"{api.url}/console/runs/{started.run_id}")
            await expect(page.get_by_role("heading", name="Best hours chosen")).to_be_visible()

            table = page.locator("#best-hour-best")
            await expect(table.locator("caption")).to_have_text(
                "best: 3 profiles · profile 2 · app 0 · default 1"
            )
            rows = table.locator("tbody tr")
            assert await rows.count() == 2
            by_hour = {
                int(await row.get_attribute("data-hour") or -1): await row.locator(
                    "th, td"
                ).all_inner_texts()
                for row in await rows.all()
            }
            assert by_hour == {
                own: [f"{own:02d}:00", "2", "2", "0", "0"],
                default: [f"{default:02d}:00", "1", "0", "0", "1"],
            }
            await assert_labelled(page)
            await page.screenshot(path=artifact(f"best-hours-{store}"), full_page=True)
            await browser.close()
        await cancel_run(s.client, s.db, started.run_id)
        await s.finish(started)
