"""The console's webhooks page in headless Chromium, on the real stack and both stores: an
endpoint subscribed with its form (its secret shown on that answer only), a refused URL
told why, and the endpoint deleted with its button."""

from __future__ import annotations

import re

from playwright.async_api import async_playwright, expect

from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY, assert_labelled
from tests.scene import PATIENCE_S, SceneFactory
from tidings.api.app import create_app


async def test_the_webhooks_page_subscribes_shows_the_secret_once_and_deletes(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene(callback_allowed=["127.0.0.1"]) as s:
        app = create_app(s.stack.settings, s.db)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(PATIENCE_S * 1000)
            await page.goto(f"{api.url}/console/webhooks")
            await expect(page).to_have_url(re.compile(r"/console/login"))
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
            await assert_labelled(page)

            await page.get_by_label("URL (https").fill("http://127.0.0.1:9/hooks")
            await page.get_by_label("run.finished").check()
            await page.get_by_label("push.sent").check()
            await page.get_by_label("App (optional").fill("journeys")
            await page.get_by_role("button", name="Subscribe").click()
            secret = await page.locator("#signing-secret").inner_text()
            assert secret.startswith("whsec_")
            [endpoint] = (await s.stack.http.get("/v1/webhooks")).json()["items"]
            row = page.locator(f"#webhook-{endpoint['id']}")
            await expect(row).to_contain_text("push.sent, run.finished")
            await expect(row).to_contain_text("journeys")
            await page.screenshot(path=artifact(f"webhooks-created-{store}"), full_page=True)

            await page.goto(f"{api.url}/console/webhooks")
            await expect(row).to_be_visible()
            assert secret not in await page.content()

            await page.get_by_label("URL (https").fill("https://10.0.0.1/hooks")
            await page.get_by_label("push.opened").check()
            await page.get_by_role("button", name="Subscribe").click()
            await expect(page.get_by_role("status")).to_contain_text(
                "Nothing was created: url: refused"
            )
            await expect(page.get_by_role("status")).to_contain_text("private")
            await page.screenshot(path=artifact(f"webhooks-refused-{store}"), full_page=True)

            await row.get_by_role("button", name="Delete").click()
            await expect(page.get_by_role("status")).to_contain_text(
                f"Endpoint {endpoint['id']} deleted"
            )
            await expect(row).to_have_count(0)
            assert (await s.stack.http.get("/v1/webhooks")).json()["items"] == []
            await browser.close()
