"""Where the console meets the API app: its router, static files, templates and log-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tidings.api.deps import ApiState
from tidings.api.throttle import source_of
from tidings.console.session import COOKIE, LIFETIME_S, is_admin_key, new_session, valid_session

BASE = "/console"
HERE = Path(__file__).parent
LOGIN_FORM_LIMIT = 8 << 10

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.tidings
    return state


def signed_in(request: Request) -> bool:
    return valid_session(state_of(request).admin_key, request.cookies.get(COOKIE))


def page(
    request: Request, template: str, title: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    html = templates.get_template(template).render(
        base=BASE, title=title, signed_in=signed_in(request), request=request, **context
    )
    return HTMLResponse(html, status_code=status)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{BASE}/login?next={quote(target)}", status_code=303)


def _safe_next(target: str) -> str:
    """Only a path of the console: never another site (an open redirect)."""
    if target.startswith(BASE + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return BASE + "/"


router = APIRouter(prefix=BASE, include_in_schema=False)


@router.get("/login")
async def login_form(request: Request, next: str = BASE + "/") -> Response:
    return page(request, "login.html", "Log in", next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    body = await request.body()
    if len(body) > LOGIN_FORM_LIMIT:
        return page(
            request,
            "login.html",
            "Log in",
            status=413,
            next=BASE + "/",
            error="That form is too large.",
        )
    form = parse_qs(body.decode(errors="replace"))
    key = (form.get("key") or [""])[0]
    target = _safe_next((form.get("next") or [BASE + "/"])[0])
    state = state_of(request)
    if key and is_admin_key(state.admin_key, key):
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(
            COOKIE,
            new_session(state.admin_key),
            max_age=LIFETIME_S,
            path=BASE,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer
    retry_after = state.failed_authentications.fail(source_of(request.scope))
    if retry_after is not None:
        return page(
            request,
            "login.html",
            "Log in",
            status=429,
            next=target,
            error=f"Too many failed log-ins from this address: try again in {retry_after} s.",
        )
    return page(
        request,
        "login.html",
        "Log in",
        status=401,
        next=target,
        error="That is not the admin key. Check .tidings/admin.key or TIDINGS_ADMIN_KEY.",
    )


@router.post("/logout")
async def logout() -> Response:
    answer = RedirectResponse(f"{BASE}/login", status_code=303)
    answer.delete_cookie(COOKIE, path=BASE)
    return answer


def install_console(app: FastAPI) -> None:
    from tidings.console import pages, profile_import, schedules, segments, webhooks

    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(schedules.router)
    app.include_router(webhooks.router)
    app.include_router(segments.router)
    app.include_router(profile_import.router)
    app.mount(f"{BASE}/static", StaticFiles(directory=HERE / "static"), name="console-static")
