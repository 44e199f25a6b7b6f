"""Long console work as jobs with ids: a SQL query runs on a thread; the page polls its state and survives a reload.

Jobs are kept by the console of one server (`Console.jobs`), owned by the key that started them, and
forgotten `keep_s` after they end (at most `max_jobs`, oldest finished first).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


@dataclass
class SQLJob:
    """One query run from the console: its state, progress and, once done, its rows (or its error)."""

    id: str
    owner: str | None
    sql: str
    started: float
    status: str = RUNNING
    finished: float | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    cost_usd: float = 0.0
    error: str | None = None
    _con: Any = None
    _cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> float | None:
        """DuckDB's own estimate of how far the query is (0..1), None when it has none."""
        if self.status != RUNNING:
            return 1.0 if self.status == DONE else None
        con = self._con
        if con is None:
            return None
        with contextlib.suppress(Exception):
            value = float(con.duckdb.query_progress())
            return value / 100 if value >= 0 else None
        return None

    @property
    def spent_usd(self) -> float:
        """USD spent so far (exact once done)."""
        con = self._con
        if self.status == RUNNING and con is not None and con.brickyard.cap is not None:
            return float(con.brickyard.cap.spent_usd)
        return self.cost_usd

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        """Stop the query: DuckDB is interrupted until the job ends (a query just starting misses one interrupt)."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        threading.Thread(target=self._interrupt, name=f"console-cancel-{self.id}", daemon=True).start()

    def _interrupt(self) -> None:
        deadline = time.monotonic() + 60
        while self.finished is None and time.monotonic() < deadline:
            con = self._con
            if con is not None:
                with contextlib.suppress(Exception):
                    con.duckdb.interrupt()
            time.sleep(0.05)


Runner = Callable[[Callable[[Any], None]], Any]
"""Runs the query, handing its connection to the callback first; returns a `SQLResult` or raises."""


class Jobs:
    """The jobs of one console (thread-safe)."""

    def __init__(self, *, keep_s: float = 3600.0, max_jobs: int = 200) -> None:
        self._keep = keep_s
        self._max = max_jobs
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, SQLJob] = OrderedDict()

    def start(self, owner: str | None, sql: str, run: Runner) -> SQLJob:
        job = SQLJob(id=secrets.token_hex(8), owner=owner, sql=sql, started=time.time())
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, run), name=f"console-sql-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> SQLJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: SQLJob, run: Runner) -> None:
        def watch(con: Any) -> None:
            if job._cancelled.is_set():
                raise _Cancelled("cancelled")
            job._con = con

        try:
            result = run(watch)
        except Exception as exc:
            job.error = "cancelled" if job._cancelled.is_set() else _message(exc)
            job.status = CANCELLED if job._cancelled.is_set() else FAILED
        else:
            job.columns, job.rows, job.truncated, job.cost_usd = (
                result.columns,
                result.rows,
                result.truncated,
                result.cost_usd,
            )
            job.status = CANCELLED if job._cancelled.is_set() else DONE
        finally:
            if job.status == CANCELLED and job._con is not None and job._con.brickyard.cap is not None:
                with contextlib.suppress(Exception):
                    job.cost_usd = float(job._con.brickyard.cap.spent_usd)
            job._con = None
            job.finished = time.time()

    def _prune(self) -> None:
        now = time.time()
        for job_id, job in list(self._jobs.items()):
            if job.finished is not None and (now - job.finished > self._keep or len(self._jobs) >= self._max):
                del self._jobs[job_id]


class _Cancelled(Exception):
    """The job was cancelled before its query started."""


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0]
