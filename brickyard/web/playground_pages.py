"""The playground: one prompt streamed from 2–4 endpoints side by side, each with latency, tokens and cost;
a comparison is saved as a case of an evaluation set (its next version)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from brickyard.models._types import ChatRequest
from brickyard.server.errors import APIError, to_api_error
from brickyard.server.streaming import Emit, EventStream, sse
from brickyard.store.evals import CaseRow
from brickyard.web.console import Console, Refused, Viewer
from brickyard.web.home_pages import guarded

COLUMNS = 4
PLAYGROUND_SOURCE = "console playground"
_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def router(console: Console) -> APIRouter:
    web = APIRouter(include_in_schema=False)
    state = console.state
    timeout_s = state.settings.server.request_timeout_s
    page = guarded(console)

    def endpoints(viewer: Viewer) -> list[str]:
        """The endpoints and aliases this key may call (agents are not streamed here)."""
        return [
            name
            for name, kind in state.targets.names()
            if kind in ("endpoint", "alias") and viewer.principal.allows(name, state.targets.canonical(name))
        ]

    @web.get("/playground")
    @page
    async def playground(request: Request) -> Response:
        viewer = console.require(request)
        return console.page(request, "playground.html", viewer, endpoints=endpoints(viewer), columns=COLUMNS)

    @web.post("/playground/stream")
    @page
    async def stream(request: Request) -> Response:
        viewer, form = await console.check_post(request)
        chat = _request(form)
        try:
            target = state.targets.resolve(form.get("endpoint", ""), viewer.principal)
            if target.namespaced:
                raise Refused(400, "the playground compares endpoints; try agents on their own page")
            started = time.perf_counter()
            deadline = asyncio.get_running_loop().time() + timeout_s
            async with asyncio.timeout_at(deadline):
                opened = await target.model.open_stream(chat, caller=viewer.principal.caller("playground"))
        except APIError as exc:
            raise Refused(exc.status, exc.message) from None
        except Exception as exc:  # the endpoint failed before its first piece: say so in the column
            error = to_api_error(exc)
            raise Refused(error.status, error.message) from None

        async def produce(emit: Emit) -> None:
            try:
                pieces = opened.__aiter__()
                while True:
                    async with asyncio.timeout_at(deadline):
                        try:
                            piece = await anext(pieces)
                        except StopAsyncIteration:
                            break
                    await emit(sse({"delta": piece}))
            except Exception as exc:
                await emit(sse({"error": to_api_error(exc).message}))
                return
            finally:
                await opened.aclose()
            final = opened.final
            await emit(
                sse(
                    {
                        "done": True,
                        "latency_s": round(time.perf_counter() - started, 3),
                        "input_tokens": final.usage.input_tokens if final else None,
                        "output_tokens": final.usage.output_tokens if final else None,
                        "cost_usd": final.cost_usd if final else None,
                        "served_by": (final.endpoint or target.name) if final else target.name,
                    }
                )
            )

        return EventStream(produce, {"X-Content-Type-Options": "nosniff"}, on_close=opened.aclose)

    @web.post("/playground/save")
    @page
    async def save(request: Request) -> Response:
        viewer, form = await console.check_post(request)
        name = form.get("set", "").strip()
        if not _SET_NAME.match(name):
            raise Refused(400, "set: name the evaluation set with letters, digits, `_`, `.` or `-` (e.g. playground)")
        prompt = form.get("user", "")
        if not prompt.strip():
            raise Refused(400, "user: the prompt is empty; run a comparison first")
        try:
            outputs = json.loads(form.get("outputs", "{}"))
        except ValueError:
            raise Refused(400, "outputs: not JSON; run the comparison again") from None
        if not isinstance(outputs, dict) or not outputs:
            raise Refused(400, "outputs: nothing to save; run a comparison first")
        expected = form.get("expected") or None
        if expected is not None and expected not in outputs:
            raise Refused(400, f"expected: {expected[:40]!r} is not one of the compared endpoints")
        store = console.workspace.eval_store

        def add() -> int:
            latest = store.version(name)
            if latest is not None and latest.source != PLAYGROUND_SOURCE and not viewer.admin:
                raise Refused(
                    403,
                    f"set: {name} was not made in the playground, so only an admin key may add to it. "
                    "Fix: name a new set",
                )
            cases = store.cases(name, latest.version) if latest else []
            case = CaseRow(
                id=f"playground-{int(time.time() * 1000)}",
                split="test",
                input=prompt,
                expected=outputs[expected]["text"] if expected else None,
                metadata={
                    "system": form.get("system", ""),
                    "outputs": {str(k): v for k, v in outputs.items()},
                    "saved_by": viewer.name,
                },
            )
            return store.add_version(
                name,
                [*cases, case],
                created=time.time(),
                source=latest.source if latest else PLAYGROUND_SOURCE,
                description=f"a playground comparison added by {viewer.name}",
                seed=latest.seed if latest else 0,
                dev_fraction=latest.dev_fraction if latest else 0.0,
                synthetic=latest.synthetic if latest else False,
            )

        version = await asyncio.to_thread(add)
        return console.page(request, "playground_saved.html", viewer, name=name, version=version)

    return web


def _request(form: dict[str, str]) -> ChatRequest:
    """The chat request of the form: system, user, temperature, max_tokens and an optional JSON schema."""
    user = form.get("user", "")
    if not user.strip():
        raise Refused(400, "user: write a prompt")
    options: dict[str, Any] = {}
    for name, kind in (("temperature", float), ("max_tokens", int)):
        value = form.get(name, "").strip()
        if value:
            try:
                options[name] = kind(value)
            except ValueError:
                raise Refused(400, f"{name}: {value[:20]!r} is not a number") from None
    schema = form.get("json_schema", "").strip()
    if schema:
        try:
            options["json_schema"] = json.loads(schema)
        except ValueError as exc:
            raise Refused(400, f"json_schema: not valid JSON ({exc})") from None
        if not isinstance(options["json_schema"], dict):
            raise Refused(400, "json_schema: must be a JSON object")
    try:
        return ChatRequest.from_prompt(user, system=form.get("system") or None, **options)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in error["loc"]) or "request"
        raise Refused(400, f"{where}: {error['msg']}") from None
