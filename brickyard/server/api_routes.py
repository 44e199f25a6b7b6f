"""brickyard's own routes: agent invocations (Databricks-style), read-only SQL, usage, health."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from brickyard.commitments import RECENT_DAYS, burn_downs
from brickyard.server.errors import APIError
from brickyard.server.schemas import InvocationBody, Message, SQLBody
from brickyard.server.sql_api import run_sql
from brickyard.server.state import ServerState, json_response, parse_body

USAGE_GROUPS = ("endpoint", "model", "tag", "key", "day", "status")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([hd])$")


def parse_time(value: str | None, param: str) -> float | None:
    """Unix seconds, an ISO 8601 time, or a span back from now like `24h` or `7d`."""
    if value is None or value == "":
        return None
    match = _RELATIVE.match(value)
    if match:
        return time.time() - float(match[1]) * (3600 if match[2] == "h" else 86400)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise APIError(
            400, f"`{param}` must be unix seconds, an ISO 8601 time or a span like 24h or 7d", param=param
        ) from None


def _text_of(messages: list[Message]) -> str:
    users = [m for m in messages if m.role == "user"] or messages
    content = users[-1].content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content or ""


def router(state: ServerState) -> APIRouter:
    """The `/api/...` and health routes of one server."""
    api = APIRouter()
    server = state.workspace.settings.server

    @api.post(
        "/api/agents/{name}/invocations",
        tags=["agents"],
        summary="Invoke an agent (Databricks-style: `input` or `messages`)",
        openapi_extra=state.body_schema(InvocationBody),
        response_class=Response,
    )
    async def invoke_agent(name: str, request: Request) -> Response:
        principal = state.authenticate(request)
        body = parse_body(InvocationBody, await state.read_body(request))
        if (body.input is None) == (body.messages is None):
            raise APIError(400, "send exactly one of `input` (a text or messages) or `messages`", param="input")
        target = state.targets.resolve("agent:" + name, principal)
        given = body.messages if body.messages is not None else body.input
        text = given if isinstance(given, str) else _text_of(given or [])
        if not text.strip():
            raise APIError(400, "the input is empty. Fix: send the text the agent should work on", param="input")
        async with asyncio.timeout(server.request_timeout_s):
            run = await state.agents.run(name, text, caller=principal.caller(request.headers.get("x-brickyard-tag")))
        trace = run.trace
        output = run.output
        citations = None
        if target.knowledge and isinstance(output, dict):
            reply, citations = str(output.get("answer", "")), output.get("citations") or []
        else:
            reply = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        item_id = "msg-" + run.run_id
        return json_response(
            {
                "id": run.run_id,
                "object": "agent.invocation",
                "messages": [{"id": item_id, "role": "assistant", "content": reply}],
                "output": [
                    {
                        "type": "message",
                        "id": item_id,
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": reply}],
                    }
                ],
                "custom_outputs": {
                    "agent": name,
                    "version": trace.version,
                    "run_id": run.run_id,
                    "result": output,
                    "citations": citations,
                    "usage": {"input_tokens": trace.input_tokens, "output_tokens": trace.output_tokens},
                    "cost_usd": trace.cost_usd,
                    "latency_s": trace.latency_s,
                },
            }
        )

    @api.post(
        "/api/sql",
        tags=["sql"],
        summary="Run one read-only SELECT (AI functions allowed) on the warehouse",
        openapi_extra=state.body_schema(SQLBody),
        response_class=Response,
    )
    async def sql(request: Request) -> Response:
        principal = state.authenticate(request)
        if not principal.sql:
            raise APIError(
                403,
                f"key {principal.name} may not run SQL. Fix: ask an admin for a key created with --sql",
                "permission_error",
                "sql_not_allowed",
            )
        body = parse_body(SQLBody, await state.read_body(request))
        # Every AI call of the query carries the key (its budget and rate limits are checked per call).
        result = await asyncio.to_thread(
            run_sql,
            state.workspace,
            body.query,
            caller=principal.caller(request.headers.get("x-brickyard-tag")),
            row_limit=server.sql_row_limit,
            timeout_s=server.sql_timeout_s,
            max_cost_usd=None,
        )
        return json_response(
            {
                "columns": result.columns,
                "rows": result.rows,
                "row_count": len(result.rows),
                "truncated": result.truncated,
                "row_limit": server.sql_row_limit,
                "cost_usd": result.cost_usd,
            }
        )

    @api.get("/api/usage", tags=["usage"], summary="Usage from the ledger, summed by group (and the records)")
    async def usage(
        request: Request,
        key: str | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
        since: str | None = Query(None, description="unix seconds, ISO 8601, or a span like 24h / 7d"),
        until: str | None = Query(None, description="unix seconds or ISO 8601"),
        group_by: str = Query("endpoint", description=f"comma-separated: {', '.join(USAGE_GROUPS)}"),
        records: bool = Query(False, description="also return the matching records (newest last)"),
        limit: int = Query(1000, ge=1, le=100_000, description="records returned at most"),
    ) -> Response:
        principal = state.authenticate(request)
        if not principal.admin:
            if key is not None and key != principal.name:
                raise APIError(
                    403, "only an admin key may read other keys' usage", "permission_error", "admin_only", "key"
                )
            key = principal.name
        groups = [g.strip() for g in group_by.split(",") if g.strip()]
        unknown = [g for g in groups if g not in USAGE_GROUPS]
        if unknown:
            raise APIError(400, f"cannot group by {unknown}. Fix: use some of {list(USAGE_GROUPS)}", param="group_by")
        filters: dict[str, Any] = {
            "since": parse_time(since, "since"),
            "until": parse_time(until, "until"),
            "endpoint": endpoint,
            "tag": tag,
            "key": key,
        }
        store = state.workspace.store
        rows = await asyncio.to_thread(lambda: store.summarize(groups, **filters))
        out: dict[str, Any] = {
            "group_by": groups,
            "filters": filters,
            "summary": [
                {
                    **dict(zip(groups, r.group, strict=False)),
                    **{k: v for k, v in dataclasses.asdict(r).items() if k != "group"},
                }
                for r in rows
            ],
        }
        if records:
            found = await asyncio.to_thread(lambda: store.usage(**filters))
            out["records"] = [dataclasses.asdict(r) for r in found[-limit:]]
        return json_response(out)

    @api.get("/api/commitments", tags=["usage"], summary="Each commitment's burn-down, projection and alert")
    async def commitments(request: Request) -> Response:
        principal = state.authenticate(request)
        if not principal.admin:  # a commitment sums every key's spend
            raise APIError(
                403,
                "only an admin key may read commitments (they sum every key's spend). "
                "Fix: use a key created with --admin",
                "permission_error",
                "admin_only",
            )
        now = time.time()
        rows = await asyncio.to_thread(burn_downs, state.workspace.settings, state.workspace.store, now)
        return json_response({"now": now, "recent_days": RECENT_DAYS, "commitments": [r.as_dict() for r in rows]})

    @api.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @api.get("/readyz", tags=["health"], summary="Readiness: config, keys and ledger are usable")
    async def readyz() -> Response:
        try:
            await asyncio.to_thread(state.keys.count)
            await asyncio.to_thread(state.workspace.store.spent_usd, since=time.time())
        except Exception as exc:
            return json_response({"status": "unavailable", "reason": type(exc).__name__}, status=503)
        return json_response({"status": "ready", "open": state.auth.is_open(), "pid": os.getpid()})

    return api
