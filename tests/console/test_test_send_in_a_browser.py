"""A designer tries a push on their own phone from the journey's page, in headless Chromium
on the real stack: a profile that does not exist is refused naming the field, then the node,
rendered for a profile, reaches exactly the listed device (counted at the simulator) and the
page shows each device's outcome."""

from __future__ import annotations

import re

from playwright.async_api import async_playwright, expect
from sqlmodel import col, select

from tests.console.conftest import artifact, served
from tests.scene import PATIENCE_S, SceneFactory, journey, push
from tidings.api.app import create_app
from tidings.console.temporal import provide_client
from tidings.store.models import Delivery, Device, TestSend

ADMIN_KEY = "test-admin-key"


async def test_a_node_is_sent_to_the_designers_phone_from_the_journeys_page(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        await s.profile("ann", devices=("fcm",), attributes={"first_name": "Ann"})
        (phone,) = await s.profile("me", devices=("apns",))
        definition = journey(
            push("hello", "Hi {{ first_name }}", next="pause"),
            {"id": "pause", "type": "delay", "duration": "1h"},
            attributes=["first_name"],
        )
        saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
        assert saved.status_code == 201, saved.text
        async with s.db.read() as session:
            mine = (await session.exec(select(Device).where(col(Device.token) == phone))).one()
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            page.set_default_timeout(PATIENCE_S * 1000)
            await page.goto(f"{api.url}/console/login")
            await page.get_by_label("Admin key").fill(ADMIN_KEY)
            await page.get_by_role("button", name="Log in").click()
            await page.goto(f"{api.url}/console/journeys/{definition.id}")

            form = page.locator("#test-send-form")
            await form.get_by_label("Push node").select_option("hello")
            await form.get_by_label(re.compile("Render for the profile")).fill("nobody")
            await form.get_by_role("button", name="Send to these devices").click()
            await expect(page.get_by_role("status")).to_contain_text(
                "Nothing was sent: profile_id: no profile with id 'nobody'"
            )

            await form.get_by_label(re.compile("Render for the profile")).fill("ann")
            await form.get_by_label(re.compile("Devices")).fill(str(mine.id))
            await form.get_by_role("button", name="Send to these devices").click()
            outcome = page.locator("#test-send-devices")
            await expect(outcome).to_contain_text("sent")
            await expect(page.locator(".test-send-outcome")).to_contain_text("Hi Ann")
            await page.screenshot(path=artifact(f"test-send-{store}"), full_page=True)
            await browser.close()

        # exactly the listed device got the push, rendered for ann; nothing else was sent
        accepted = [*s.sims.apns.accepted(), *s.sims.fcm.accepted()]
        assert [r.token for r in accepted] == [phone]
        assert "Hi Ann" in str(accepted[0].payload)
        async with s.db.read() as session:
            (row,) = (await session.exec(select(TestSend))).all()
            assert row.requested_by == "console"
            assert [d["status"] for d in row.devices] == ["sent"]
            assert (await session.exec(select(Delivery))).all() == []
