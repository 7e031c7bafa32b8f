"""The console's door: the admin key through a log-in form, a signed session cookie, the same
limit on failed attempts as the API's keys; and the OpenAPI page's assets served locally."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, serving
from tidings.api.throttle import FailedAuthentications
from tidings.console.session import COOKIE, new_session, valid_session
from tidings.store.apps import stop_sends
from tidings.store.db import Database
from tidings.store.models import App

ADMIN_KEY = "test-admin-key"


@pytest.fixture
async def api(tmp_path: Path, db: Database) -> AsyncIterator[Api]:
    async with serving(tmp_path, db) as served:
        yield served


def browser(api: Api) -> httpx.AsyncClient:
    """A client without the admin's bearer key, as a browser is."""
    return api.client(None)


async def test_a_page_sends_a_visitor_without_a_session_to_the_log_in_form(api: Api) -> None:
    async with browser(api) as visitor:
        answer = await visitor.get("/console/runs/some-run")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=/console/runs/some-run"


async def test_the_admin_key_opens_a_session_and_the_pages(api: Api) -> None:
    async with browser(api) as visitor:
        answer = await visitor.post(
            "/console/login", data={"key": ADMIN_KEY, "next": "/console/apps"}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/apps"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
        assert valid_session(ADMIN_KEY, visitor.cookies.get(COOKIE))
        page = await visitor.get("/console/apps")
    assert page.status_code == 200
    assert "<h1>Apps</h1>" in page.text


async def test_a_wrong_key_is_refused_clearly_and_opens_nothing(api: Api) -> None:
    async with browser(api) as visitor:
        answer = await visitor.post("/console/login", data={"key": "not-the-key"})
        assert answer.status_code == 401
        assert "That is not the admin key" in answer.text
        assert COOKIE not in visitor.cookies
        assert (await visitor.get("/console/")).status_code == 303


async def test_failed_log_ins_are_limited_like_the_api_s_failed_keys(
    tmp_path: Path, db: Database
) -> None:
    async with serving(tmp_path, db) as api:
        api.app.state.tidings.failed_authentications = FailedAuthentications(
            burst=2, refill_per_s=0.001
        )
        async with browser(api) as visitor:
            codes = [
                (await visitor.post("/console/login", data={"key": "wrong"})).status_code
                for _ in range(3)
            ]
            blocked = await visitor.post("/console/login", data={"key": "wrong"})
            # a bad bearer key from the same address is over the same limit
            api_answer = await api.client("wrong").get("/v1/apps")
            right = await visitor.post("/console/login", data={"key": ADMIN_KEY})
    assert codes == [401, 401, 429]
    assert "Too many failed log-ins" in blocked.text
    assert api_answer.status_code == 429
    assert right.status_code == 303  # the right key is always served


async def test_a_forged_or_expired_session_is_no_session(api: Api) -> None:
    assert not valid_session(ADMIN_KEY, new_session("another-admin-key"))
    assert not valid_session(ADMIN_KEY, new_session(ADMIN_KEY, now=0))
    async with browser(api) as visitor:
        visitor.cookies.set(COOKIE, new_session("another-admin-key"))
        assert (await visitor.get("/console/")).status_code == 303


async def test_log_in_never_redirects_to_another_site(api: Api) -> None:
    async with browser(api) as visitor:
        answer = await visitor.post(
            "/console/login", data={"key": ADMIN_KEY, "next": "https://evil.example/"}
        )
    assert answer.headers["location"] == "/console/"


async def test_the_openapi_page_loads_nothing_from_another_host(api: Api) -> None:
    async with browser(api) as visitor:
        page = await visitor.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
            assert f"/docs-assets/{asset}" in page.text
            served = await visitor.get(f"/docs-assets/{asset}")
            assert served.status_code == 200
            assert len(served.content) > 10_000
        assert (await visitor.get("/console/static/console.css")).status_code == 200


@asynccontextmanager
async def signed_in(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(api) as visitor:
        answer = await visitor.post("/console/login", data={"key": ADMIN_KEY})
        assert answer.status_code == 303
        yield visitor


async def test_the_app_page_shows_a_stopped_provider_and_why(api: Api) -> None:
    await api.create_app("shop", with_credentials=True)
    async with api.db.write() as session:
        app = await session.get(App, "shop")
        assert app is not None
        await stop_sends(session, app, "apns", "403 InvalidProviderToken", datetime.now(UTC))
    async with signed_in(api) as visitor:
        page = await visitor.get("/console/apps/shop")
    assert page.status_code == 200
    providers = page.text.split('id="providers"')[1].split("</table>")[0]
    apns, fcm = providers.split('<th scope="row">')[1:]
    assert "stopped" in apns
    assert "403 InvalidProviderToken" in apns
    assert "running" in fcm


async def test_pages_of_what_does_not_exist_answer_404(api: Api) -> None:
    async with signed_in(api) as visitor:
        for path in ("/console/runs/nope", "/console/journeys/nope", "/console/apps/nope"):
            answer = await visitor.get(path)
            assert answer.status_code == 404, path
            assert "Nothing is stored under" in answer.text
        assert (await visitor.get("/console/profiles/nobody")).status_code == 404


async def test_log_out_ends_the_session(api: Api) -> None:
    async with signed_in(api) as visitor:
        assert (await visitor.get("/console/")).status_code == 200
        answer = await visitor.post("/console/logout")
        assert answer.status_code == 303
        assert COOKIE not in visitor.cookies
        assert (await visitor.get("/console/")).status_code == 303
