"""Running the server: under uvicorn in the foreground (`brickyard serve`), or on a background thread."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from brickyard._errors import UserError
from brickyard.server.app import WORKSPACE_ENV, create_app, freeze_startup_heap
from brickyard.server.auth import LOOPBACK
from brickyard.workspace import Workspace


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(workspace: Path, host: str) -> bool:
    """True when the server will run open (no keys); refuses an open server on a non-loopback address."""
    keys = Workspace(workspace).keys  # keys.sqlite, or PostgreSQL with `[store] url`
    try:
        open_server = keys.count() == 0
    finally:
        keys.close()
    if open_server and not is_loopback(host):
        raise UserError(
            f"the workspace has no API keys, so serving on {host} would let anyone on the network in. "
            "Fix: brickyard keys create --name NAME --endpoints ... (then send it as the bearer key), "
            "or serve on 127.0.0.1"
        )
    return open_server


def serve(
    workspace: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    access_log: bool = False,
    graceful_timeout_s: float = 30.0,
    log_level: str = "info",
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM; in-flight requests finish, usage is flushed."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    os.environ[WORKSPACE_ENV] = str(workspace)  # worker processes build their app from it
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": access_log,
        "log_level": log_level,
        "timeout_graceful_shutdown": graceful_timeout_s,
        "server_header": False,
        "date_header": False,
    }
    if workers == 1:
        # uvicorn re-raises SIGTERM once it has shut down gracefully; exit 0 then, as the multi-worker supervisor does
        signal.signal(signal.SIGTERM, _exit_cleanly)
        app = create_app(workspace)
        freeze_startup_heap()
        uvicorn.run(app, **options)
    else:
        uvicorn.run("brickyard.server.app:app_from_environment", factory=True, workers=workers, **options)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


class BackgroundServer:
    """The server on a daemon thread at `url` (127.0.0.1, a free port unless given), for demos and tests.

    with BackgroundServer(workspace) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key)
    """

    def __init__(
        self, app: FastAPI | Workspace | str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = app if isinstance(app, FastAPI) else create_app(app)
        self.host = host
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="brickyard-server", daemon=True)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish, flush usage."""
        self.server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
