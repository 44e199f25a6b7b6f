"""What one server process holds: the workspace, keys and target resolver, plus small HTTP helpers."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from brickyard.agents.runner import Agents
from brickyard.server.auth import Authenticator, Principal
from brickyard.server.errors import APIError
from brickyard.server.targets import Targets
from brickyard.workspace import Workspace

B = TypeVar("B", bound=BaseModel)


class ServerState:
    """Everything the routes of one app share. Built when the app is created; closed at shutdown."""

    def __init__(self, workspace: Workspace, *, owns_workspace: bool) -> None:
        self.workspace = workspace
        self.owns_workspace = owns_workspace
        self.settings = workspace.settings  # fail early on a bad brickyard.toml
        self.keys = workspace.keys
        self.auth = Authenticator(self.keys)
        self.agents = Agents(workspace)
        self.targets = Targets(workspace.registry)
        self.max_body = self.settings.server.max_request_bytes
        self.schemas: dict[str, Any] = {}

    def authenticate(self, request: Request) -> Principal:
        client = request.client
        return self.auth.authenticate(request.headers.get("authorization"), client.host if client else None)

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with 413 as soon as it passes `[server] max_request_bytes`."""
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise APIError(400, "the Content-Length header is not a number", code="invalid_value")
            if int(length) > self.max_body:
                raise self._too_large()
            return await request.body()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than {self.max_body:,} bytes. Fix: send less, or raise "
            "`max_request_bytes` under [server] in brickyard.toml",
            code="request_too_large",
        )

    def body_schema(self, model: type[BaseModel]) -> dict[str, Any]:
        """`openapi_extra` declaring `model` as the JSON request body (its schema goes to components)."""
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}

    async def aclose(self) -> None:
        """Write the queued usage, then close what this state opened."""
        try:
            self.workspace.store.flush()
        finally:
            self.agents.close()
            if self.owns_workspace:
                await self.workspace.aclose()


def json_response(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
    return Response(data, status_code=status, media_type="application/json", headers=headers)


def parse_body(model: type[B], raw: bytes) -> B:
    """Validate a JSON body; the first problem becomes a 400 naming the parameter."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        if error["type"] == "json_invalid":
            raise APIError(400, f"the body is not valid JSON: {error['msg']}", code="invalid_json") from None
        where = ".".join(str(p) for p in error["loc"])
        if error["type"] == "missing":
            raise APIError(400, f"`{where}` is required", code="invalid_value", param=where) from None
        if error["type"] == "extra_forbidden":
            raise APIError(400, f"unknown field `{where}`", code="invalid_value", param=where) from None
        if where:
            raise APIError(400, f"`{where}`: {error['msg']}", code="invalid_value", param=where) from None
        raise APIError(400, f"the body is not valid: {error['msg']}", code="invalid_value") from None
