"""The console's segments page in headless Chromium, on the real stack and both stores: a
definition previewed unsaved (count and sample), a bad one refused naming its field with
its text kept, one saved and previewed; a journey version started for the segment from the
journey's page reaches its profiles' devices; a delete refused while a journey names it."""

from __future__ import annotations

import re

from playwright.async_api import async_playwright, expect

from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY, assert_labelled
from tests.scene import PATIENCE_S, SceneFactory, journey, push
from tidings.api.app import create_app
from tidings.console.temporal import provide_client
from tidings.store.models import JourneyRun


async def test_segments_are_previewed_saved_used_and_kept_in_the_browser(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        pro_tokens = [
            token
            for n in range(3)
            for token in await s.profile(f"pro-{n}", attributes={"plan": "pro"})
        ]
        await s.profile("free-0", attributes={"plan": "free"})
        definition = journey(push("hello"), audience={"segment": "pro"})
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(PATIENCE_S * 1000)
            await page.goto(f"{api.url}/console/segments")
            await expect(page).to_have_url(re.compile(r"/console/login"))
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
            await expect(page.get_by_text("No segment yet")).to_be_visible()

            await page.get_by_label("Name").fill("pro")
            await page.get_by_label("Definition").fill("all:\n  - device: {provider: windows}\n")
            await page.get_by_role("button", name="Save segment").click()
            problems = page.get_by_role("alert")
            await expect(problems).to_contain_text("all.0.device.provider")
            await expect(page.get_by_label("Definition")).to_have_value(
                "all:\n  - device: {provider: windows}\n"
            )

            await page.get_by_label("Definition").fill(
                "all:\n  - attribute: plan=pro\n  - device: {provider: apns}\n"
            )
            await page.get_by_role("button", name="Preview").click()
            await expect(page.locator("#preview-count")).to_have_text("3")
            await expect(page.locator("#preview-sample li")).to_have_text(
                ["pro-0", "pro-1", "pro-2"]
            )
            await page.get_by_role("button", name="Save segment").click()
            await expect(page.get_by_role("status")).to_have_text("Segment pro saved.")
            await expect(page.locator("#segment-pro")).to_contain_text("plan")
            await expect(page.locator("#preview-count")).to_have_text("3")
            await assert_labelled(page)
            await page.screenshot(path=artifact(f"segments-{store}"), full_page=True)

            # the journey takes the segment as its audience: start it from its page
            saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
            assert saved.status_code == 201, saved.text
            await page.goto(f"{api.url}/console/journeys/{definition.id}")
            await page.get_by_label("Or a saved segment").select_option("pro")
            await page.get_by_role("button", name="Start version 1").click()
            await expect(page).to_have_url(re.compile(r"/console/runs/run-"))
            run_id = page.url.rsplit("/", 1)[-1]

            async def finished() -> bool:
                async with s.db.read() as session:
                    run = await session.get(JourneyRun, run_id)
                return run is not None and run.finished_at is not None

            await s.until(finished, "the segment's run finished")
            pushed = [record.token for record in s.sims.apns.accepted()]
            assert sorted(pushed) == sorted(pro_tokens)

            await page.goto(f"{api.url}/console/segments")
            await page.get_by_role("button", name="Delete pro").click()
            await expect(page.get_by_role("status")).to_contain_text(
                f"Not deleted: segment 'pro' is the audience of journey '{definition.id}'"
            )
            await expect(page.locator("#segment-pro")).to_be_visible()
            await browser.close()
