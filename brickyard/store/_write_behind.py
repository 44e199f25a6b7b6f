"""What the ledgers' write-behind threads share: how long a batch may gather before it is written.

A usage row queued while the writer is idle would otherwise cost a transaction (and a thread hand-off) of its
own; waiting a few milliseconds for more rows turns a busy gateway's rows into one transaction per batch.
A flush or a close cuts the wait short, so reads through the store (which flush first) never see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

LINGER_S = 0.02
"""The longest a queued row waits for others before its batch is written."""
BATCH_ROWS = 512
"""A batch this large is written at once."""


def gather(queue: threading.Condition, size: Callable[[], int], hurry: Callable[[], bool]) -> None:
    """Holding `queue`: wait up to `LINGER_S` for `BATCH_ROWS` queued rows, unless `hurry()` (a flush, a close)."""
    deadline = time.monotonic() + LINGER_S
    while size() < BATCH_ROWS and not hurry():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        queue.wait(remaining)


def wait_written(store: WriteBehind, timeout_s: float) -> int:
    """Holding `store._queue`: hurry a gathering batch and wait until every row queued so far is written (or
    `timeout_s` passes, or the writer is gone); returns how many queued rows are still unwritten."""
    deadline = time.monotonic() + timeout_s
    target = store._queued
    store._flushing += 1
    store._queue.notify_all()  # a batch still gathering is written now
    try:
        while store._written < target:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or store._writer is None or not store._writer.is_alive():
                break
            store._queue.wait(min(remaining, 0.5))
    finally:
        store._flushing -= 1
    return max(target - store._written, 0)


class WriteBehind(Protocol):
    """The queue fields a buffered store keeps (SQLite and PostgreSQL ledgers)."""

    _queue: threading.Condition
    _queued: int
    _written: int
    _flushing: int
    _writer: threading.Thread | None
