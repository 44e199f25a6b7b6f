"""The FastAPI app: `create_app(workspace)`; `brickyard serve` runs it under uvicorn."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from brickyard import __version__
from brickyard._errors import BrickyardError
from brickyard.server import api_routes, openai_routes
from brickyard.server.errors import APIError, to_api_error
from brickyard.server.state import ServerState
from brickyard.workspace import Workspace

WORKSPACE_ENV = "BRICKYARD_SERVE_WORKSPACE"

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

    app = FastAPI(
        title="brickyard",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.brickyard = state
    app.include_router(openai_routes.router(state))
    app.include_router(api_routes.router(state))

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
    return create_app(os.environ.get(WORKSPACE_ENV) or None)
