"""The FastAPI app: `create_app(workspace)`; `brickyard serve` runs it under uvicorn."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from brickyard import __version__, web
from brickyard._errors import BrickyardError
from brickyard.server import api_routes, openai_routes
from brickyard.server.errors import APIError, to_api_error
from brickyard.server.state import ServerState
from brickyard.workspace import Workspace

WORKSPACE_ENV = "BRICKYARD_SERVE_WORKSPACE"
HOT_ROUTES = ("/v1/chat/completions", "/v1/embeddings")
"""POST routes dispatched straight to their handler (see `GatewayApp`)."""

Handler = Callable[[Request], Awaitable[Response]]

DESCRIPTION = """\
An OpenAI-compatible gateway to the workspace's endpoints and agents. Send the API key as
`Authorization: Bearer <key>` (`brickyard keys create`). Errors use OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`; 429 answers carry `Retry-After`.
"""


def create_app(workspace: Workspace | str | Path | None = None) -> FastAPI:
    """The server app for a workspace (a `Workspace`, a folder, or `$BRICKYARD_HOME` / `./.brickyard`).

    A `Workspace` passed in stays open at shutdown (its usage is flushed); one built here is closed.
    """
    owns = not isinstance(workspace, Workspace)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    state = ServerState(ws, owns_workspace=owns)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await state.aclose()  # uvicorn lets in-flight requests finish before this runs

    app = GatewayApp(
        title="brickyard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.brickyard = state
    openai_api = openai_routes.router(state)
    app.include_router(openai_api)
    app.include_router(api_routes.router(state))
    web.mount(app, state)  # the console for people at `/` (brickyard.web)
    app.hot_routes = {
        route.path: route.endpoint
        for route in openai_api.routes
        if isinstance(route, APIRoute) and route.path in HOT_ROUTES and route.methods == {"POST"}
    }

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path", "body"))
        return APIError(400, f"`{where}`: {error.get('msg')}", code="invalid_value", param=where or None).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        error = APIError(exc.status_code, str(exc.detail), kind, code, headers=dict(exc.headers or {}))
        return error.response()

    @app.exception_handler(BrickyardError)
    @app.exception_handler(TimeoutError)
    async def known(request: Request, exc: Exception) -> Response:
        return to_api_error(exc).response()

    @app.exception_handler(Exception)
    async def anything(request: Request, exc: Exception) -> Response:  # a bug: logged, no detail to the client
        return to_api_error(exc).response()

    _document(app, state)
    return app


class GatewayApp(FastAPI):
    """FastAPI, with the hot POST routes (`HOT_ROUTES`) handed straight to their handlers.

    FastAPI's routing and middleware stack cost about as much CPU per call as the gateway's own work. The hot
    handlers take the bare `Request`, read and validate their bodies themselves and raise errors that
    `to_api_error` maps (as the app's exception handlers do), so they skip the stack. Every other route, the
    OpenAPI document and the lifespan go through FastAPI as usual. An app given middleware
    (`app.add_middleware`, e.g. CORS) sends every request through the full stack, so the middleware applies.
    """

    hot_routes: dict[str, Handler] | None = None
    """Path → handler of the hot routes (set by `create_app` before the first request)."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.user_middleware else _HotPath(stack, dict(self.hot_routes or {}))


class _HotPath:
    """ASGI: `POST` to a hot route calls its handler directly; anything else goes to the full stack."""

    def __init__(self, app: ASGIApp, routes: dict[str, Handler]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            handler = self.routes.get(path[len(root) :] if root and path.startswith(root) else path)
            if handler is not None:
                try:
                    response = await handler(Request(scope, receive, send))
                except Exception as exc:  # what the app's exception handlers answer
                    response = to_api_error(exc).response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _document(app: FastAPI, state: ServerState) -> None:
    """Add the request-body schemas and the bearer scheme to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(state.schemas)
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_environment() -> FastAPI:
    """The app factory uvicorn workers call (`brickyard serve --workers N`): the workspace comes from the env."""
    app = create_app(os.environ.get(WORKSPACE_ENV) or None)
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """In a serving process: exempt what startup built (modules, the app, schemas) from garbage collection.

    The cyclic collector's full passes walk every live object; under load they ran every second or two and
    took tens of milliseconds each, which showed as latency spikes. Frozen objects are never scanned (nor
    freed: only call this in a process that serves until it exits). The `openai` SDK, otherwise imported by
    the first call, is imported first so that its many objects are frozen too.
    """
    import openai  # noqa: F401

    gc.collect()
    gc.freeze()
