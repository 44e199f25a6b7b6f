"""Local engines take turns on the host: a lease, shared through lock files, held while a process decodes.

Two processes that each run llama.cpp with all cores on a 2-core machine slow each other by an order of
magnitude (their threads spin against each other). With the lease they take turns instead: a process
holds it while it has calls in flight, and when another process is waiting, it stops admitting new calls,
lets the ones in flight finish and hands the lease over. Two queries then share the cores (each about half
the rows per second) instead of collapsing.

Two lock files in the models folder: `engine.lock` (exclusive: the holder decodes) and `engine.queue`
(shared by the processes waiting for the holder, so the holder can see that someone waits).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HAND_OVER_TIMEOUT_S = 0.5
"""How long a process that released the lease to a waiting neighbour waits for it to take it."""


class HostLease:
    """A host-wide turn at the local engines; the calls of one process share the turn."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cond = threading.Condition()
        self._active = 0
        self._held = False
        self._yielding = False
        self._engine: int | None = None
        self._queue: int | None = None
        self.turns = 0
        """How many times this process took the lease (a measure of how often it changed hands)."""

    def _files(self) -> tuple[int, int]:
        if self._engine is None or self._queue is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._engine = os.open(self.folder / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._queue = os.open(self.folder / "engine.queue", os.O_RDWR | os.O_CREAT, 0o600)
        return self._engine, self._queue

    def _someone_waits(self) -> bool:
        _, queue = self._files()
        try:
            fcntl.flock(queue, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(queue, fcntl.LOCK_UN)
        return False

    def _take(self) -> None:
        engine, queue = self._files()
        try:
            fcntl.flock(engine, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process decodes: queue up where it can see us, then wait
            fcntl.flock(queue, fcntl.LOCK_SH)
            try:
                fcntl.flock(engine, fcntl.LOCK_EX)
            finally:
                fcntl.flock(queue, fcntl.LOCK_UN)
        self._held = True
        self.turns += 1

    def _give_back(self, waiting: bool) -> None:
        engine, _ = self._files()
        fcntl.flock(engine, fcntl.LOCK_UN)
        self._held = False
        if waiting:  # let the neighbour take it before asking again (Linux wakes it but does not hand it over)
            deadline = time.monotonic() + HAND_OVER_TIMEOUT_S
            while self._someone_waits() and time.monotonic() < deadline:
                time.sleep(0.001)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the lease (shared with this process's other calls) for one call."""
        with self._cond:
            while self._yielding:
                self._cond.wait()
            if self._held and self._someone_waits():  # drain, hand over, then queue up
                self._yielding = True
                while self._active:
                    self._cond.wait()
                if self._held:
                    self._give_back(waiting=True)
                self._yielding = False
                self._cond.notify_all()
            if not self._held:
                self._take()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._give_back(waiting=self._someone_waits())
                self._cond.notify_all()

    def close(self) -> None:
        for fd in (self._engine, self._queue):
            if fd is not None:
                os.close(fd)
        self._engine = self._queue = None
