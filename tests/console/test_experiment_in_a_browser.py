"""An experiment split on a run's page in headless Chromium, on the real stack and both
stores: each branch's sample, conversions, rate and difference with the control as the report
gives them, the verdict in words, and the button that promotes the winner, after which the
profiles reaching the split take it."""

from __future__ import annotations

import re

from playwright.async_api import async_playwright, expect

from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY, assert_labelled
from tests.engine.test_experiments import experiment_of, let_through_and_check, run_a_promotion
from tests.scene import PATIENCE_S, SceneFactory
from tidings.api.app import create_app
from tidings.console.temporal import provide_client


async def test_the_run_page_shows_the_experiment_and_promotes_its_winner(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        run_id, branch, later = await run_a_promotion(s, promote="manual")

        async def judged() -> bool:
            return (await experiment_of(s, run_id)).winner == 1

        await s.until(judged, "branch 1 is a clear winner")
        found = await experiment_of(s, run_id)
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(PATIENCE_S * 1000)
            await page.goto(f"{api.url}/console/runs/{run_id}")
            await expect(page).to_have_url(re.compile(r"/console/login"))
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_role("button", name="Log in").click()
            await page.goto(f"{api.url}/console/runs/{run_id}")

            table = page.locator("#experiment-split")
            for row in found.branches:
                cells = await table.locator(f'tr[data-branch="{row.index}"] td').all_inner_texts()
                assert cells[0] == str(row.profiles)
                assert cells[1] == str(row.conversions)
                assert row.rate is not None
                assert cells[2] == f"{row.rate * 100:.1f} %"
            challenger = found.branches[1]
            assert challenger.difference is not None
            await expect(table.locator('tr[data-branch="1"]')).to_contain_text(
                f"{challenger.difference * 100:+.1f} points"
            )
            await expect(page.locator("#verdict-split")).to_have_text(found.explanation)
            await assert_labelled(page)
            await page.screenshot(path=artifact(f"experiment-{store}"), full_page=True)

            await page.get_by_role(
                "button", name="Send everyone who reaches split down branch 1"
            ).click()
            await expect(page.get_by_role("status")).to_contain_text("Promoted branch 1 of split")
            await expect(page.locator("#promoted-split")).to_contain_text("branch 1 (console")
            await page.screenshot(path=artifact(f"experiment-promoted-{store}"), full_page=True)
            await browser.close()
        await let_through_and_check(s, run_id, branch, later, "console")
