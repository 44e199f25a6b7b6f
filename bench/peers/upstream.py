"""A minimal, fast OpenAI-compatible upstream: raw asyncio HTTP/1.1 (uvloop when installed), one process.

Answers every ``POST .../chat/completions`` with the same small chat completion (with ``usage``) without
parsing the body, so the gateway benchmark measures the gateway and not the fake. ``GET .../models``
lists one model, ``GET /stats`` returns ``{"requests": N}`` (chat completions served since start).
Keep-alive and pipelined requests are handled; chunked request bodies are not (411).

    python bench/peers/upstream.py --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import cast

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "pong"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    },
    separators=(",", ":"),
).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "x"}]})


def _response(status: str, body: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body


class _Upstream(asyncio.Protocol):
    """One connection: buffer bytes, answer each complete request in order."""

    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            method, target = lines[0].split(" ", 2)[:2]
            length, keep_alive, chunked = 0, not lines[0].endswith("HTTP/1.0"), False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    keep_alive = value.strip().lower() != "close"
                elif name == "transfer-encoding":
                    chunked = "chunked" in value.lower()
            if chunked:
                self.transport.write(_response("411 Length Required", b'{"error":"chunked"}', False))
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self._answer(method, target.split("?")[0], keep_alive))
            if not keep_alive:
                self.transport.close()
                return

    def _answer(self, method: str, path: str, keep_alive: bool) -> bytes:
        if method == "POST" and path.endswith("/chat/completions"):
            _Upstream.served += 1
            return _response("200 OK", _COMPLETION, keep_alive)
        if method == "GET" and path.endswith("/models"):
            return _response("200 OK", _MODELS.encode(), keep_alive)
        if method == "GET" and path == "/stats":
            return _response("200 OK", json.dumps({"requests": _Upstream.served}).encode(), keep_alive)
        return _response("404 Not Found", b'{"error":{"message":"not found","type":"not_found"}}', keep_alive)


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"upstream listening on http://{host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port))
    except ImportError:
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
