"""A throwaway PostgreSQL server on 127.0.0.1 for the benchmarks that use `[store] url` (Debian's `postgresql`).

The same steps as the test fixtures (tests/conftest.py): initdb and pg_ctl run as the `postgres` user when the
benchmark runs as root (PostgreSQL refuses root), trust authentication on loopback, fsync off, a free port.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.common import free_port


def postgres_bin() -> Path:
    """The folder holding initdb/pg_ctl/postgres: Debian's versioned folder, else whatever `pg_ctl` is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]), reverse=True)
    on_path = shutil.which("pg_ctl")
    for candidate in (*found, *([on_path] if on_path else [])):
        folder = Path(candidate).resolve().parent
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise RuntimeError("PostgreSQL is not installed: run `make setup` or `apt-get install -y postgresql`")


def _as_postgres_user() -> list[str]:
    """The command prefix that runs PostgreSQL as a non-root user (it refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    return ["runuser", "-u", "postgres", "--"]


class Postgres:
    """A running server: `database()` creates an empty database and returns its url."""

    def __init__(self, port: int, version: str) -> None:
        self.port = port
        self.version = version

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, prefix: str = "bench") -> str:
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server(max_connections: int = 300) -> Iterator[Postgres]:
    """Start a fresh PostgreSQL server on a free loopback port; stop it and delete its files on exit."""
    folder = postgres_bin()
    prefix = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="brickyard-bench-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, log = root / "data", root / "server.log"
    port = free_port()

    def run(*command: str) -> str:
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}{detail}")
        return done.stdout

    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections={max_connections}"
    run(str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N")
    run(str(folder / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")
    try:
        version = run(str(folder / "postgres"), "--version").strip()
        yield Postgres(port, version)
    finally:
        subprocess.run(
            [*prefix, str(folder / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
