"""Server-sent events for streamed chat completions, cancelled as soon as the client goes away.

Starlette's `StreamingResponse` notices a disconnect only when its next write fails, so a slow upstream
would keep generating (and charging) for a client that left. `EventStream` listens for `http.disconnect`
while it sends and cancels the producer at once; the producer's `finally` closes the upstream stream,
whose metering records what was produced (status `cancelled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

Emit = Callable[[bytes], Awaitable[None]]


def sse(data: dict[str, Any] | str) -> bytes:
    """One SSE event carrying JSON (or a literal like `[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


class EventStream(Response):
    """Runs `produce(emit)` as the body of a `text/event-stream` response; a disconnect cancels it."""

    media_type = "text/event-stream"

    def __init__(
        self,
        produce: Callable[[Emit], Awaitable[None]],
        headers: dict[str, str] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(content=None, status_code=200, headers={"Cache-Control": "no-cache", **(headers or {})})
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._produce = produce
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await self._run(receive, send)
        finally:
            if self._on_close is not None:  # also when the client left before the first byte
                await self._on_close()

    async def _run(self, receive: Receive, send: Send) -> None:
        async def emit(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        async def pump() -> None:
            await self._produce(emit)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        producer = asyncio.ensure_future(pump())
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (producer, watcher):
                task.cancel()
            for task in (producer, watcher):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
