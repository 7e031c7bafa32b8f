"""The console's import page in headless Chromium, on both stores: CSV rows pasted are
imported, a bad row is listed by line and field with nothing of it stored, the text kept."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.api.conftest import Api, serving
from tests.console.conftest import artifact, served
from tests.console.test_console_in_a_browser import ADMIN_KEY
from tidings.store.db import Database
from tidings.store.models import Profile


@pytest.fixture
async def api(tmp_path: Path, db: Database) -> AsyncIterator[Api]:
    async with serving(tmp_path, db) as running:
        yield running


async def test_rows_pasted_are_imported_and_bad_ones_listed(api: Api, chromium: str) -> None:
    store = "postgres" if api.db.url.startswith("postgresql") else "sqlite"
    async with served(api.app) as server, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        await page.goto(f"{server.url}/console/import")
        await expect(page).to_have_url(re.compile(r"/console/login"))
        await page.get_by_label("Admin key").fill(ADMIN_KEY)
        await page.get_by_role("button", name="Log in").click()
        await expect(
            page.get_by_role("heading", name="Import profiles", exact=True)
        ).to_be_visible()
        await page.get_by_label("Format").select_option("csv")
        rows = 'id,email,attributes.note\nann,ann@example.com,"two\nlines"\nbob,nope,x\n'
        await page.get_by_role("textbox", name="Rows").fill(rows)
        await page.get_by_role("button", name="Import").click()
        await expect(page.locator("#import-counts")).to_have_text(
            "2 rows, 1 created, 0 updated, 1 failed"
        )
        await expect(page.get_by_role("table")).to_contain_text("email")
        await expect(page.get_by_role("row", name=re.compile("^4 "))).to_be_visible()
        await expect(page.get_by_role("textbox", name="Rows")).to_have_value(rows)
        await page.screenshot(path=artifact(f"import-{store}"), full_page=True)
        await browser.close()
    async with api.db.read() as session:
        ann = await session.get(Profile, "ann")
        assert await session.get(Profile, "bob") is None
    assert ann is not None
    # a browser sends a textarea's line breaks as CRLF (HTML), kept inside the quoted cell
    assert ann.attributes == {"note": "two\r\nlines"}
