"""SQLite plumbing shared by the ledger, its budget tables and the feature files: connections, lock retries."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0
RETRY_FOR_S = 120.0  # beyond SQLite's own busy timeout, retry "database is locked" this long


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def open_file(path: Path) -> sqlite3.Connection:
    """A feature's own SQLite file (agents, evaluations): WAL, busy timeout, usable from any thread.

    Autocommit (`isolation_level=None`): callers open write transactions with `BEGIN IMMEDIATE` themselves,
    and guard the connection with a lock of their own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return db


def retrying(fn: Callable[[], T]) -> T:
    """Run `fn`, retrying "database is locked/busy" (beyond SQLite's busy timeout) with backoff."""
    deadline = time.monotonic() + RETRY_FOR_S
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            message = str(exc).lower()
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
