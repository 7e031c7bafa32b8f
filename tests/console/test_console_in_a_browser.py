"""A designer's afternoon in the console, in headless Chromium, on the real stack (Temporal,
the worker, the simulators, both stores): log in (a wrong key first), write the journey (a
broken one first), start
it from its page, watch its graph count the profiles as they move, check that every number
shown is the store's, look at a profile and the app, and cancel the run. Each page is
screenshotted under test-artifacts/console/."""

from __future__ import annotations

import json
import re
import time

from playwright.async_api import Page, async_playwright, expect
from sqlmodel import col, select

from tests.console.conftest import artifact, served
from tests.scene import APP, PATIENCE_S, SceneFactory, journey, push
from tidings.api.app import create_app
from tidings.console.temporal import provide_client
from tidings.journeys.model import JourneyDefinition
from tidings.runs.report import run_report
from tidings.sim import Answer, Scenario
from tidings.store.models import Delivery, Device, JourneyRun, JourneyVersion

ADMIN_KEY = "test-admin-key"


async def assert_labelled(page: Page) -> None:
    """Every control a screen reader meets has a name: inputs by their label, buttons by
    their text, images (the SVG charts) by their title."""
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll(
                'input:not([type=hidden]), select, textarea, button, svg[role=img]')]
            .filter(e => {
                if (e.tagName === 'BUTTON') return !e.textContent.trim();
                if (e.tagName === 'svg') return !e.getAttribute('aria-labelledby');
                return !(e.labels && e.labels.length);
            }).map(e => e.outerHTML.slice(0, 80))"""
    )
    assert unnamed == []


async def cell(page: Page, selector: str) -> int:
    return int((await page.inner_text(selector)).split()[0])


async def test_a_designer_runs_watches_checks_and_cancels_a_journey_in_the_browser(
    scene: SceneFactory, chromium: str, database_url: str
) -> None:
    store = "postgres" if database_url.startswith("postgresql") else "sqlite"
    async with scene() as s:
        await s.profile("ann", attributes={"first_name": "Ann"})
        await s.profile("bob", attributes={"first_name": "Bob"})
        (gone,) = await s.profile("cyd", attributes={"first_name": "Cyd"})
        # no first_name: the template fails for this profile alone, the reason shown
        await s.profile("dee", attributes={})
        gone_at_ms = int(time.time() * 1000) + 60_000  # after its registration: gone for good
        s.sims.apns.set_scenario(
            Scenario(scripted={gone: [Answer(reason="Unregistered", timestamp_ms=gone_at_ms)]})
        )
        definition = journey(
            push("hello", "Hi {{ first_name }}", next="pause"),
            {"id": "pause", "type": "delay", "duration": "1h", "next": "test"},
            {
                "id": "test",
                "type": "random_split",
                "branches": [{"percent": 50, "next": "bye"}, {"percent": 50}],
            },
            push("bye", "bye"),
            attributes=["first_name"],
            goal={"event": "purchased"},
        )
        app = create_app(s.stack.settings, s.db)
        provide_client(app, s.client)
        async with served(app) as api, async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium, args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(PATIENCE_S * 1000)

            # a wrong key is refused, saying so, and opens nothing
            await page.goto(f"{api.url}/console/")
            await expect(page).to_have_url(re.compile(r"/console/login"))
            await page.get_by_label("Admin key").fill("not-the-key")
            await page.get_by_role("button", name="Log in").click()
            await expect(page.get_by_role("alert")).to_contain_text("That is not the admin key")
            await page.screenshot(path=artifact(f"login-wrong-key-{store}"), full_page=True)

            # by keyboard only: the key field has the focus, Enter submits
            await page.get_by_label("Admin key").fill("")
            await page.keyboard.type(ADMIN_KEY)
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", name="Journeys")).to_be_visible()

            # the journey is written in the page: a broken one is refused by node and field,
            # its text kept and nothing stored; then the real one is saved as version 1
            text = page.get_by_label("Journey definition")
            await text.fill("id: broken\nname: B\napp: x\nnodes:\n  - {id: a, type: delay}\n")
            await page.get_by_role("button", name="Save journey").click()
            await expect(page.get_by_role("alert")).to_contain_text("node a")
            await expect(page.get_by_label("Journey definition")).to_have_value(
                re.compile("id: broken")
            )
            await page.screenshot(path=artifact(f"journey-refused-{store}"), full_page=True)
            await text.fill(json.dumps(definition.model_dump(mode="json")))
            await page.get_by_role("button", name="Save journey").click()
            await expect(page.get_by_role("status")).to_contain_text("Saved as version 1")
            async with s.db.read() as session:
                assert await session.get(JourneyVersion, ("broken", 1)) is None
                stored = await session.get(JourneyVersion, (definition.id, 1))
            assert stored is not None
            assert JourneyDefinition.model_validate(stored.definition) == definition
            await page.goto(f"{api.url}/console/")
            await page.screenshot(path=artifact(f"journeys-{store}"), full_page=True)

            await page.get_by_role("link", name=definition.id).click()
            await expect(
                page.get_by_role("heading", name=f"Journey {definition.id}")
            ).to_be_visible()
            await page.screenshot(path=artifact(f"journey-{store}"), full_page=True)

            await page.get_by_role("link", name="version 1").click()
            graph = page.locator("svg[role=img]")
            for node in ("hello", "pause", "bye"):
                await expect(graph.locator(f'[data-node="{node}"]')).to_be_visible()
            await page.screenshot(path=artifact(f"version-graph-{store}"), full_page=True)
            await page.go_back()

            # start it from the page: the run's page, live
            await page.get_by_role("button", name="Start version 1").click()
            await expect(page).to_have_url(re.compile(r"/console/runs/"))
            run_id = page.url.rsplit("/", 1)[1]
            # the graph refreshes itself: the profiles reach the delay and wait there
            await expect(page.locator('[data-counts-for="pause"]')).to_contain_text(
                "here 4", timeout=PATIENCE_S * 1000
            )

            async with s.db.read() as session:
                run = await session.get(JourneyRun, run_id)
            assert run is not None
            assert run.status == "running"
            report = await run_report(s.db, run_id)
            assert (report.pushes_sent, report.delivered, report.tokens_invalidated) == (3, 2, 1)
            await page.reload()
            (hello,) = report.nodes
            shown = [
                int(t)
                for t in await page.locator('#funnel tr[data-node="hello"] td').all_inner_texts()
            ]
            assert shown == [
                hello.targeted,
                hello.sent,
                hello.delivered,
                hello.failed,
                hello.tokens_invalidated,
                hello.opened,
                hello.clicked,
                sum(hello.not_sent.values()),
            ]
            assert await cell(page, "#total-sent") == report.pushes_sent
            assert await cell(page, "#total-delivered") == report.delivered
            assert await cell(page, "#total-invalidated") == report.tokens_invalidated
            assert await cell(page, "#goal-reached") == report.goal_reached
            (split,) = report.splits
            rows = page.locator("#split-test tbody tr")
            for branch in split.branches:
                texts = await rows.nth(branch.index).locator("td").all_inner_texts()
                assert int(texts[1]) == branch.profiles
                assert int(texts[2]) == branch.converted
            reasons = page.locator("#reasons")
            await expect(reasons).to_contain_text("token_gone")
            (template_error,) = hello.not_sent
            assert template_error.startswith("template error: ")
            await expect(reasons).to_contain_text(f"not sent: {template_error}")
            await expect(page.locator("svg.chart")).to_be_visible()
            await page.screenshot(path=artifact(f"run-{store}"), full_page=True)
            await assert_labelled(page)

            # the run's NDJSON export, downloaded from its page: what the API streams
            async with page.expect_download() as downloading:
                await page.locator("#export").click()
            download = await downloading.value
            assert download.suggested_filename == f"{run_id}.ndjson"
            lines = (await download.path()).read_text().splitlines()
            from_api = await s.stack.http.get(f"/v1/runs/{run_id}/export")
            assert from_api.status_code == 200, from_api.text
            assert lines == from_api.text.splitlines()
            records = [json.loads(line)["record"] for line in lines]
            assert records[0] == "run"
            assert records.count("push") == 4  # every ledger row, not-sent ones among them

            # every push, its outcome: the one whose token is gone among them
            await page.get_by_role("link", name=re.compile("Every push of this run")).click()
            ledger_rows = sum(n.sent + sum(n.not_sent.values()) for n in report.nodes)
            assert await page.locator("#pushes tbody tr").count() == ledger_rows == 4
            await page.get_by_label("Outcome").select_option("token_gone")
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("#pushes tbody tr")).to_have_count(1)
            await expect(page.locator("#pushes")).to_contain_text("cyd")
            await page.screenshot(path=artifact(f"pushes-{store}"), full_page=True)

            # a profile: its devices, the invalidated one saying why, and its timeline
            await page.get_by_label("Profile id").fill("cyd")
            await page.get_by_role("button", name="Open").click()
            await expect(page.get_by_role("heading", name="Profile cyd")).to_be_visible()
            async with s.db.read() as session:
                devices = (
                    await session.exec(select(Device).where(col(Device.profile_id) == "cyd"))
                ).all()
                pushes = (
                    await session.exec(select(Delivery).where(col(Delivery.profile_id) == "cyd"))
                ).all()
            assert await page.locator("#devices tbody tr").count() == len(devices) == 1
            await expect(page.locator("#devices")).to_contain_text(str(devices[0].state))
            assert str(devices[0].state) == "invalid"
            assert await page.locator("#timeline tbody tr").count() == len(pushes)
            await expect(page.locator("#timeline")).to_contain_text(pushes[0].tracking_id)
            await page.screenshot(path=artifact(f"profile-{store}"), full_page=True)

            # the app: providers running, the invalid-token rate of its devices
            await page.goto(f"{api.url}/console/apps/{APP}")
            await expect(page.locator("#providers")).to_contain_text("running")
            await expect(page.locator("#token-health")).to_contain_text("25.0 %")  # 1 of 4
            await page.get_by_role("button", name="Check the credentials now").click()
            await expect(page.locator("#check-result")).to_contain_text("apns")
            await page.screenshot(path=artifact(f"app-{store}"), full_page=True)

            # cancel from the run's page
            await page.goto(f"{api.url}/console/runs/{run_id}")
            await page.get_by_role("button", name="Cancel this run").click()
            await expect(page.get_by_role("status").first).to_contain_text("Cancelled")

            async def cancelled() -> bool:
                async with s.db.read() as session:
                    found = await session.get(JourneyRun, run_id)
                return found is not None and found.status == "cancelled"

            await s.until(cancelled, "the run cancelled from the page")
            await page.reload()
            await expect(page.locator("#run-status")).to_have_text("cancelled")
            await expect(page.get_by_role("button", name="Cancel this run")).to_have_count(0)
            await page.screenshot(path=artifact(f"run-cancelled-{store}"), full_page=True)

            # a filter that matches no one is refused, saying why; a list starts for it alone
            await page.goto(f"{api.url}/console/journeys/{definition.id}")
            await page.get_by_label(re.compile("Audience filters")).fill("first_name=Nobody")
            await page.get_by_role("button", name="Start version 1").click()
            await expect(page.get_by_role("status")).to_contain_text("no profile matches")
            await page.get_by_label(re.compile("Profile ids")).fill("ann, bob")
            await page.get_by_role("button", name="Start version 1").click()
            await expect(page.locator('[data-counts-for="pause"]')).to_contain_text("here 2")
            await page.get_by_role("button", name="Cancel this run").click()
            await expect(page.get_by_role("status").first).to_contain_text("Cancelled")
            await browser.close()
