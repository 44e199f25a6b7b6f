"""What the console's routes share: the server state, sessions, jobs, templates, and the access checks.

Every page asks `viewer(request)` who is signed in (None: send them to sign in). Every state-changing
request goes through `check_post`, which refuses a missing or wrong CSRF token and a foreign Origin.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse, RedirectResponse, Response

from brickyard.server.auth import LOOPBACK, Principal
from brickyard.server.state import ServerState
from brickyard.web.jobs import Jobs
from brickyard.web.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, Session, Sessions
from brickyard.web.store import CONSOLE_NAME, ConsoleStore
from brickyard.web.usage import Rollups

HERE = Path(__file__).parent


def security_headers(nonce: str) -> dict[str, str]:
    """Scripts and style sheets from the server only, plus `<style>` elements carrying this response's nonce
    (the code editor writes its styles into one) and style attributes (the editor sets some; they run no code)."""
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@dataclass(frozen=True)
class Viewer:
    """The person signed in: their session and the key (principal) every action is checked against."""

    session: Session
    principal: Principal

    @property
    def name(self) -> str:
        return self.principal.name or "local (open server)"

    @property
    def admin(self) -> bool:
        return self.principal.admin

    @property
    def sql(self) -> bool:
        return self.principal.sql

    @property
    def usage_key(self) -> str | None:
        """The key whose usage this viewer may read: None (all) for an admin, else their own."""
        return None if self.admin else self.principal.name

    def may_see_agent(self, agent: str) -> bool:
        return self.principal.allows("agent:" + agent)


class Refused(Exception):
    """A console request that is answered with an error page (status and a one-line reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Console:
    """The console of one server: built by `brickyard.web.mount`, kept on `app.state.console`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.workspace = state.workspace
        self.store = ConsoleStore(state.workspace.path / CONSOLE_NAME)
        self.sessions = Sessions(self.store)
        self.jobs = Jobs(self.store)
        self.rollups = Rollups()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["usd"] = lambda v: f"${(v or 0):,.4f}"
        self.templates.env.filters["num"] = lambda v: f"{(v or 0):,}"

    # -- who is signed in --------------------------------------------------------------------------
    def viewer(self, request: Request) -> Viewer | None:
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            return None
        if session.key_name is None:  # signed in on an open server: valid while it stays open, from loopback
            client = request.client.host if request.client else None
            if not self.state.auth.is_open() or client not in LOOPBACK:
                self.sessions.end(session.id)
                return None
            return Viewer(session, Principal(None))
        key = self.state.keys.get(session.key_name)
        if key is None or not key.active:  # revoked: every session of the key ends now
            self.sessions.end(session.id)
            return None
        return Viewer(session, Principal(key))

    def require(self, request: Request, *, admin: bool = False) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            raise Refused(401, "sign in first")
        if admin and not viewer.admin:
            raise Refused(403, f"this page is for admin keys; {viewer.name} is not one")
        return viewer

    async def check_post(self, request: Request, *, admin: bool = False) -> tuple[Viewer, dict[str, str]]:
        """The viewer and form fields of a state-changing request, after the Origin and CSRF checks."""
        check_origin(request)
        viewer = self.require(request, admin=admin)
        form = await self.form(request)
        token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        if not viewer.session.csrf_matches(token):
            raise Refused(403, "the form's security token is missing or wrong. Fix: reload the page and try again")
        return viewer, form

    async def form(self, request: Request) -> dict[str, str]:
        """A url-encoded form body (size-limited by `[server] max_request_bytes`), last value of each field."""
        raw = await self.state.read_body(request)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if raw and kind not in ("application/x-www-form-urlencoded", ""):
            raise Refused(415, f"send the form url-encoded, not {kind}")
        try:
            fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, f"the form could not be read ({exc})") from None
        return {name: values[-1] for name, values in fields.items()}

    # -- answers -----------------------------------------------------------------------------------
    def page(
        self, request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any
    ) -> Response:
        """A rendered template with the console's security headers."""
        nonce = secrets.token_urlsafe(16)
        response = self.templates.TemplateResponse(
            request,
            template,
            {"viewer": viewer, "path": request.url.path, "csp_nonce": nonce, **context},
            status_code=status,
        )
        response.headers.update(security_headers(nonce))
        return response

    def refused(self, request: Request, exc: Refused) -> Response:
        if exc.status == 401:
            target = "/login?next=" + quote(request.url.path)
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        if request.headers.get("hx-request"):
            response = HTMLResponse(f'<p class="error" role="alert">{_escape(exc.message)}</p>', status_code=exc.status)
            response.headers.update(security_headers(secrets.token_urlsafe(16)))
            return response
        viewer = self.viewer(request)
        return self.page(request, "error.html", viewer, status=exc.status, message=exc.message)


def check_origin(request: Request) -> None:
    """Refuse a request a browser marks cross-site, or whose Origin is not this server."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise Refused(403, f"a {site} request may not change anything here")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own:
            raise Refused(403, f"the request came from {origin[:100]}, not from this console")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
