"""SQLite plumbing shared by the ledger and its budget tables: connections and the lock-retry loop."""

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
