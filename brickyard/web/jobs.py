"""Long console work as jobs with ids: a SQL query runs on a thread; any page (any worker) follows it by polling.

A job's state lives in the console's file (`brickyard.web.store`): the process running it writes its progress
every `beat_s` and its rows when done, and reads whether someone asked to cancel it. A job whose process stopped
(no heartbeat for `stale_s`) is shown as failed. Finished jobs are forgotten after `keep_s` (at most `max_jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from brickyard.web.store import ConsoleStore

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"

Runner = Callable[[str, Callable[[Any], None]], Any]
"""Runs the query of job `id`, handing its connection to the callback first; returns a `SQLResult` or raises."""
Counter = Callable[[str, float], dict[str, Any]]
"""What the query with this id (its cost cap's, on each call's usage record) started at `ts` has done so far."""


@dataclass
class SQLJob:
    """A query job as the pages show it."""

    id: str
    owner: str | None
    sql: str
    started: float
    status: str
    finished: float | None = None
    progress: float | None = None
    spent_usd: float = 0.0
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    error: str | None = None
    kind: str = "sql"
    log: str = ""
    result: dict[str, Any] | None = None

    @property
    def cost_usd(self) -> float:
        return self.spent_usd

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started


Task = Callable[[Callable[[str], None]], Awaitable[dict[str, Any]]]
"""Async work (an evaluation) given a `log(line)` callback; returns what the page links to when done."""


class _Running:
    """The part of a job only its own process has: the DuckDB connection or the task, to follow and stop it."""

    def __init__(self) -> None:
        self.con: Any = None
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.counter: Callable[[], dict[str, Any]] | None = None
        self.query: str | None = None
        self.counted_at = 0.0

    def take_lines(self) -> str:
        with self.lock:
            text, self.lines = "".join(self.lines), []
        return text

    def progress(self) -> tuple[float | None, float]:
        con = self.con
        if con is None:
            return None, 0.0
        value: float | None = None
        with contextlib.suppress(Exception):
            raw = float(con.duckdb.query_progress())
            value = raw / 100 if raw >= 0 else None
        cap = con.brickyard.cap
        return value, float(cap.spent_usd) if cap is not None else 0.0

    def interrupt_until_done(self) -> None:
        """Interrupt DuckDB (or cancel the task) until the run ends (a query just starting would miss one)."""
        if self.loop is not None and self.task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: the task is over
                self.loop.call_soon_threadsafe(self.task.cancel)
            return
        deadline = time.monotonic() + 60
        while not self.finished.is_set() and time.monotonic() < deadline:
            con = self.con
            if con is not None:
                with contextlib.suppress(Exception):
                    con.duckdb.interrupt()
            time.sleep(0.05)


class Jobs:
    """The query jobs of one workspace's console."""

    def __init__(
        self,
        store: ConsoleStore,
        *,
        keep_s: float = 3600.0,
        max_jobs: int = 200,
        beat_s: float = 0.25,
        stale_s: float = 15.0,
    ) -> None:
        self._store = store
        self._keep, self._max, self._beat, self._stale = keep_s, max_jobs, beat_s, stale_s
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def start(self, owner: str | None, sql: str, run: Runner, counter: Counter | None = None) -> SQLJob:
        job_id, now = secrets.token_hex(8), time.time()
        self._store.drop_jobs(now - self._keep, self._max)
        self._store.add_job(job_id, owner, sql, now)
        running = _Running()
        if counter is not None:
            running.counter = lambda: counter(running.query, now) if running.query else {}
        with self._lock:
            self._running[job_id] = running
        threading.Thread(
            target=self._run, args=(job_id, running, run), name=f"console-sql-{job_id}", daemon=True
        ).start()
        threading.Thread(target=self._watch, args=(job_id, running), name=f"console-beat-{job_id}", daemon=True).start()
        return SQLJob(job_id, owner, sql, now, RUNNING)

    def start_task(self, owner: str | None, kind: str, what: str, task: Task) -> SQLJob:
        """Run async work (an evaluation) as a job: its log lines are its progress; cancel cancels the task."""
        job_id, now = secrets.token_hex(8), time.time()
        self._store.drop_jobs(now - self._keep, self._max)
        self._store.add_job(job_id, owner, what, now, kind)
        running = _Running()
        with self._lock:
            self._running[job_id] = running
        threading.Thread(
            target=self._run_task, args=(job_id, running, task), name=f"console-{kind}-{job_id}", daemon=True
        ).start()
        threading.Thread(target=self._watch, args=(job_id, running), name=f"console-beat-{job_id}", daemon=True).start()
        return SQLJob(job_id, owner, what, now, RUNNING, kind=kind)

    def _run_task(self, job_id: str, running: _Running, task: Task) -> None:
        def log(line: str) -> None:
            with running.lock:
                running.lines.append(line if line.endswith("\n") else line + "\n")

        async def main() -> dict[str, Any]:
            running.loop = asyncio.get_running_loop()
            running.task = asyncio.current_task()
            if running.cancelled.is_set():
                raise asyncio.CancelledError
            return await task(log)

        result: dict[str, Any] | None = None
        error = None
        try:
            result = asyncio.run(main())
            status = DONE
        except (asyncio.CancelledError, KeyboardInterrupt):
            status, error = CANCELLED, "cancelled"
        except Exception as exc:
            status, error = FAILED, _message(exc)
        finally:
            running.finished.set()
            with self._lock:
                self._running.pop(job_id, None)
        self._store.append_log(job_id, running.take_lines())
        if result is not None:
            self._store.set_result(job_id, result)
        self._store.finish_job(
            job_id, status=status, now=time.time(), columns=[], rows=[], truncated=False, spent_usd=0.0, error=error
        )

    def get(self, job_id: str, *, with_rows: bool = True) -> SQLJob | None:
        record = self._store.job(job_id, with_rows=with_rows) if len(job_id) <= 64 else None
        if record is None:
            return None
        job = SQLJob(
            id=record["id"],
            owner=record["owner"],
            sql=record["sql"],
            started=record["started"],
            status=record["status"],
            finished=record["finished"],
            progress=record["progress"],
            spent_usd=record["spent_usd"] or 0.0,
            columns=record["columns"],
            rows=record["rows"],
            truncated=bool(record["truncated"]),
            error=record["error"],
            kind=record["kind"],
            log=record["log"],
            result=record["result"],
        )
        if job.status == RUNNING and time.time() - record["heartbeat"] > self._stale:
            job.status, job.error = FAILED, "the server process running this query stopped. Fix: run it again"
        return job

    def cancel(self, job_id: str) -> None:
        """Ask the process running the job to stop it (this one, or another worker within `beat_s`)."""
        self._store.request_cancel(job_id)
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            self._stop(running)

    def _stop(self, running: _Running) -> None:
        if not running.cancelled.is_set():
            running.cancelled.set()
            threading.Thread(target=running.interrupt_until_done, daemon=True).start()

    def _watch(self, job_id: str, running: _Running) -> None:
        while not running.finished.wait(self._beat):
            progress, spent = running.progress()
            with contextlib.suppress(Exception):
                lines = running.take_lines()
                if lines:
                    self._store.append_log(job_id, lines)
                if running.counter is not None and running.query and time.monotonic() - running.counted_at >= 1.0:
                    running.counted_at = time.monotonic()
                    self._store.set_result(job_id, running.counter())
                if self._store.beat(job_id, time.time(), progress, spent):
                    self._stop(running)

    def _run(self, job_id: str, running: _Running, run: Runner) -> None:
        def watch(con: Any) -> None:
            if running.cancelled.is_set():
                raise _Cancelled("cancelled")
            running.con = con
            cap = con.brickyard.cap
            running.query = cap.id if cap is not None else None

        columns: list[str] = []
        rows: list[list[Any]] = []
        truncated, error = False, None
        try:
            result = run(job_id, watch)
        except Exception as exc:
            status = CANCELLED if running.cancelled.is_set() else FAILED
            error = "cancelled" if status == CANCELLED else _message(exc)
            spent = running.progress()[1]
        else:
            status = CANCELLED if running.cancelled.is_set() else DONE
            columns, rows, truncated, spent = result.columns, result.rows, result.truncated, result.cost_usd
        finally:
            running.finished.set()
            with self._lock:
                self._running.pop(job_id, None)
        if running.counter is not None and running.query:
            with contextlib.suppress(Exception):
                self._store.set_result(job_id, running.counter())
        self._store.finish_job(
            job_id,
            status=status,
            now=time.time(),
            columns=columns,
            rows=rows,
            truncated=truncated,
            spent_usd=spent,
            error=error,
        )


class _Cancelled(Exception):
    """The job was cancelled before its query started."""


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message).splitlines()[0]
