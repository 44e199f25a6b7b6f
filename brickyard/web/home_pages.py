"""Sign in, sign out, and the start page."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from brickyard.server.auth import LOOPBACK
from brickyard.server.errors import APIError
from brickyard.web.console import Console, Refused, check_origin
from brickyard.web.sessions import COOKIE

Page = Callable[..., Awaitable[Response]]


def guarded(console: Console) -> Callable[[Page], Page]:
    """Answer a `Refused` raised by a page with the console's error page (or a redirect to sign in)."""

    def wrap(fn: Page) -> Page:
        @functools.wraps(fn)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                return await fn(request, *args, **kwargs)
            except Refused as exc:
                return console.refused(request, exc)

        return inner

    return wrap


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server only (never `//host` or a full URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/usage"
    return value


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    state = console.state
    page = guarded(console)

    @web.get("/")
    @page
    async def home(request: Request) -> Response:
        viewer = console.viewer(request)
        return RedirectResponse("/usage" if viewer else "/login", status_code=303)

    @web.get("/login")
    @page
    async def login_form(request: Request, next: str | None = None) -> Response:
        client = request.client.host if request.client else None
        open_server = state.auth.is_open() and client in LOOPBACK
        return console.page(request, "login.html", None, next=safe_next(next), open_server=open_server)

    @web.post("/login")
    @page
    async def login(request: Request) -> Response:
        check_origin(request)  # no login CSRF: a foreign page cannot sign a browser into its own key
        form = await console.form(request)
        target = safe_next(form.get("next"))
        secret = form.get("key", "").strip()
        client = request.client.host if request.client else None
        try:
            if not secret and state.auth.is_open():
                principal = state.auth.authenticate(None, client)
            else:
                principal = state.auth.authenticate("Bearer " + secret if secret else None, client)
        except APIError as exc:
            message = exc.message.split(". Fix:")[0] if "Fix:" in exc.message else exc.message
            return console.page(
                request,
                "login.html",
                None,
                status=401,
                next=target,
                open_server=False,
                error=f"Not signed in: {message}. Paste a key that `brickyard keys create` made.",
            )
        session = console.sessions.create(principal.name)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            session.id,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @web.post("/logout")
    @page
    async def logout(request: Request) -> Response:
        viewer, _ = await console.check_post(request)
        console.sessions.end(viewer.session.id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return web
