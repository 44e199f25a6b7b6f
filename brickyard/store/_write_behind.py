"""What the ledgers' write-behind threads share: how long a batch may gather before it is written.

A usage row queued while the writer is idle would otherwise cost a transaction (and a thread hand-off) of its
own; waiting a few milliseconds for more rows turns a busy gateway's rows into one transaction per batch.
A flush or a close cuts the wait short, so reads through the store (which flush first) never see it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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
