"""Provider batch jobs (`brickyard.batch_api`), durable in the workspace's `batch_jobs.sqlite` (WAL, multi-process).

A job has rows (one request each, with a `custom_id`) split in chunks; each chunk is one provider batch. A
chunk is marked `submitting` (committed) before the provider is asked to create its batch and `submitted` with
the provider's batch id after, so a crash in between is seen on resume and reconciled with the provider.
No API key is ever written here: a job names its endpoint, and the key is read from the environment when used.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickyard._errors import UserError
from brickyard.store._sqlite import open_file, retrying

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    job_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
    created REAL NOT NULL, deadline REAL, on_deadline TEXT NOT NULL, status TEXT NOT NULL, tag TEXT,
    price_input_per_1m REAL NOT NULL, price_output_per_1m REAL NOT NULL,
    reservation TEXT, reserved_usd REAL NOT NULL DEFAULT 0, settled INTEGER NOT NULL DEFAULT 0, note TEXT,
    runner TEXT, runner_pid INTEGER, runner_host TEXT, runner_until REAL, job_key TEXT
);
CREATE INDEX IF NOT EXISTS batch_jobs_key ON batch_jobs (job_key, created);
CREATE TABLE IF NOT EXISTS batch_chunks (
    job_id TEXT NOT NULL, chunk INTEGER NOT NULL, state TEXT NOT NULL, provider_batch_id TEXT,
    submitting_at REAL, provider_status TEXT, PRIMARY KEY (job_id, chunk)
);
CREATE TABLE IF NOT EXISTS batch_rows (
    job_id TEXT NOT NULL, row INTEGER NOT NULL, chunk INTEGER NOT NULL, custom_id TEXT NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL, result TEXT, error TEXT, via TEXT,
    input_tokens INTEGER NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0, metered INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (job_id, row)
);
CREATE UNIQUE INDEX IF NOT EXISTS batch_rows_custom ON batch_rows (job_id, custom_id);
CREATE INDEX IF NOT EXISTS batch_chunks_provider ON batch_chunks (provider_batch_id);
"""

ROW_STATES = ("pending", "ok", "error", "unfinished")
"""A row waits (`pending`), has an answer (`ok`) or its own error (`error`), or the provider did not answer it
(its batch expired, failed or was cancelled: `unfinished`, which the deadline policy sends directly or keeps)."""


@dataclass(frozen=True)
class JobRecord:
    """One job as stored."""

    job_id: str
    endpoint: str
    provider: str
    model: str
    created: float
    deadline: float | None
    on_deadline: str
    status: str
    tag: str | None
    price_input_per_1m: float
    price_output_per_1m: float
    reservation: str | None
    reserved_usd: float
    settled: bool
    note: str | None


@dataclass(frozen=True)
class ChunkRecord:
    job_id: str
    chunk: int
    state: str
    """`new`, `submitting` (the provider may or may not have it), `submitted` or `adopted` (found on resume),
    `collected`."""
    provider_batch_id: str | None
    submitting_at: float | None
    provider_status: str | None


@dataclass(frozen=True)
class RowRecord:
    row: int
    chunk: int
    custom_id: str
    request_json: str
    state: str
    result: dict[str, Any] | None
    error: str | None
    via: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    metered: bool

    @property
    def request(self) -> dict[str, Any]:
        """The row's request (parsed when asked: most reads need only the answers)."""
        return dict(json.loads(self.request_json))


@dataclass(frozen=True)
class RowOutcome:
    """What a provider (or a direct call) said about one row."""

    custom_id: str
    state: str  # ok, error or unfinished
    result: dict[str, Any] | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    via: str = "batch"


_JOB_COLUMNS = (
    "job_id, endpoint, provider, model, created, deadline, on_deadline, status, tag, price_input_per_1m,"
    " price_output_per_1m, reservation, reserved_usd, settled, note"
)
_ROW_COLUMNS = (
    "row, chunk, custom_id, request, state, result, error, via, input_tokens, output_tokens, cost_usd, metered"
)


class BatchJobStore:
    """Jobs, their chunks and rows; every write is one short transaction (safe across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_file(path)
        with self._lock:
            self._db.executescript(_SCHEMA)

    # -- writes ---------------------------------------------------------------------------------------
    def create(
        self, job: JobRecord, rows: Sequence[tuple[str, int, dict[str, Any]]], *, key: str | None = None
    ) -> None:
        """Store a new job with its rows: (custom_id, chunk, request as JSON-able dict) in row order. `key`
        identifies the same work submitted again (see `by_key`)."""
        chunks = sorted({chunk for _, chunk, _ in rows})

        def write() -> None:
            db = self._db
            db.execute(f"INSERT INTO batch_jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' * 15)})", _job_tuple(job))
            db.executemany(
                "INSERT INTO batch_chunks (job_id, chunk, state) VALUES (?, ?, 'new')",
                [(job.job_id, c) for c in chunks],
            )
            if key is not None:
                db.execute("UPDATE batch_jobs SET job_key = ? WHERE job_id = ?", (key, job.job_id))
            db.executemany(
                "INSERT INTO batch_rows (job_id, row, chunk, custom_id, request, state) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (job.job_id, i, chunk, cid, json.dumps(request, ensure_ascii=False), "pending")
                    for i, (cid, chunk, request) in enumerate(rows)
                ],
            )

        self._transaction(write)

    def update_job(self, job_id: str, **fields: Any) -> None:
        allowed = {"status", "reservation", "reserved_usd", "settled", "note"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._transaction(
            lambda: self._db.execute(f"UPDATE batch_jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))
        )

    def claim(self, job_id: str, runner: str, *, ttl_s: float) -> str | None:
        """Take (or renew) the job's lease for `runner`; None when taken, else who holds it. A lease is free when
        it expired or its process on this host is gone (a crash), so only one process runs a job at a time."""
        host, pid = socket.gethostname(), os.getpid()

        def attempt() -> str | None:
            row = self._db.execute(
                "SELECT runner, runner_pid, runner_host, runner_until FROM batch_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is None:
                raise UserError(f"no batch job `{job_id}`. Fix: use an id from `brickyard batch list`")
            holder, holder_pid, holder_host, until = row
            free = (
                holder in (None, runner)
                or (until or 0) < time.time()
                or (holder_host == host and not _alive(int(holder_pid or 0)))
            )
            if not free:
                return f"pid {holder_pid} on {holder_host}"
            self._db.execute(
                "UPDATE batch_jobs SET runner = ?, runner_pid = ?, runner_host = ?, runner_until = ? WHERE job_id = ?",
                (runner, pid, host, time.time() + ttl_s, job_id),
            )
            return None

        return self._transaction(attempt)

    def release(self, job_id: str, runner: str) -> None:
        self._transaction(
            lambda: self._db.execute(
                "UPDATE batch_jobs SET runner = NULL, runner_until = NULL WHERE job_id = ? AND runner = ?",
                (job_id, runner),
            )
        )

    def mark_submitting(self, job_id: str, chunk: int) -> None:
        """Before the provider call: a crash from here until `mark_submitted` leaves the chunk `submitting`."""
        self._transaction(
            lambda: self._db.execute(
                "UPDATE batch_chunks SET state = 'submitting', submitting_at = ? WHERE job_id = ? AND chunk = ?",
                (time.time(), job_id, chunk),
            )
        )

    def mark_submitted(
        self, job_id: str, chunk: int, provider_batch_id: str, provider_status: str, *, state: str = "submitted"
    ) -> None:
        """The provider has the chunk's batch: `submitted` by this run, or `adopted` when found on resume."""
        self._transaction(
            lambda: self._db.execute(
                "UPDATE batch_chunks SET state = ?, provider_batch_id = ?, provider_status = ?"
                " WHERE job_id = ? AND chunk = ?",
                (state, provider_batch_id, provider_status, job_id, chunk),
            )
        )

    def mark_chunk(self, job_id: str, chunk: int, state: str, provider_status: str | None = None) -> None:
        self._transaction(
            lambda: self._db.execute(
                "UPDATE batch_chunks SET state = ?, provider_status = COALESCE(?, provider_status)"
                " WHERE job_id = ? AND chunk = ?",
                (state, provider_status, job_id, chunk),
            )
        )

    def record_rows(self, job_id: str, outcomes: Iterable[RowOutcome], *, only_pending: bool = True) -> int:
        """Store answers by custom_id; rows already final are left alone (an answer is never overwritten).
        Returns how many rows changed."""
        items = list(outcomes)

        def write() -> int:
            changed = 0
            for o in items:
                where = " AND state IN ('pending', 'unfinished')" if only_pending else ""
                cursor = self._db.execute(
                    "UPDATE batch_rows SET state = ?, result = ?, error = ?, via = ?, input_tokens = ?,"
                    f" output_tokens = ?, cost_usd = ? WHERE job_id = ? AND custom_id = ?{where}",
                    (
                        o.state,
                        json.dumps(o.result, ensure_ascii=False) if o.result is not None else None,
                        o.error,
                        o.via,
                        o.input_tokens,
                        o.output_tokens,
                        o.cost_usd,
                        job_id,
                        o.custom_id,
                    ),
                )
                changed += cursor.rowcount
            return changed

        return self._transaction(write)

    def mark_metered(self, job_id: str, rows: Sequence[int]) -> None:
        self._transaction(
            lambda: self._db.executemany(
                "UPDATE batch_rows SET metered = 1 WHERE job_id = ? AND row = ?", [(job_id, r) for r in rows]
            )
        )

    # -- reads ----------------------------------------------------------------------------------------
    def job(self, job_id: str) -> JobRecord:
        row = self._fetch(f"SELECT {_JOB_COLUMNS} FROM batch_jobs WHERE job_id = ?", (job_id,))
        if not row:
            known = ", ".join(j.job_id for j in self.jobs()[:5]) or "none"
            raise UserError(f"no batch job `{job_id}`. Fix: use an id from `brickyard batch list` (recent: {known})")
        return _job(row[0])

    def by_key(self, key: str) -> str | None:
        """The newest job stored with `key`, if any."""
        rows = self._fetch("SELECT job_id FROM batch_jobs WHERE job_key = ? ORDER BY created DESC LIMIT 1", (key,))
        return str(rows[0][0]) if rows else None

    def jobs(self) -> list[JobRecord]:
        return [_job(r) for r in self._fetch(f"SELECT {_JOB_COLUMNS} FROM batch_jobs ORDER BY created DESC", ())]

    def chunks(self, job_id: str) -> list[ChunkRecord]:
        rows = self._fetch(
            "SELECT job_id, chunk, state, provider_batch_id, submitting_at, provider_status FROM batch_chunks"
            " WHERE job_id = ? ORDER BY chunk",
            (job_id,),
        )
        return [ChunkRecord(*r) for r in rows]

    def known_provider_batches(self) -> set[str]:
        """Every provider batch id any job recorded (so reconciliation never adopts another job's batch)."""
        rows = self._fetch("SELECT provider_batch_id FROM batch_chunks WHERE provider_batch_id IS NOT NULL", ())
        return {r[0] for r in rows}

    def rows(self, job_id: str, *, chunk: int | None = None, states: Sequence[str] | None = None) -> list[RowRecord]:
        query = f"SELECT {_ROW_COLUMNS} FROM batch_rows WHERE job_id = ?"
        args: list[Any] = [job_id]
        if chunk is not None:
            query += " AND chunk = ?"
            args.append(chunk)
        if states is not None:
            query += f" AND state IN ({', '.join('?' * len(states))})"
            args.extend(states)
        return [_row(r) for r in self._fetch(query + " ORDER BY row", args)]

    def counts(self, job_id: str) -> dict[str, int]:
        """Rows per state (every state present, zero when none)."""
        rows = self._fetch("SELECT state, COUNT(*) FROM batch_rows WHERE job_id = ? GROUP BY state", (job_id,))
        return {state: 0 for state in ROW_STATES} | {str(s): int(n) for s, n in rows}

    def cost(self, job_id: str, via: str) -> float:
        rows = self._fetch(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM batch_rows WHERE job_id = ? AND via = ?", (job_id, via)
        )
        return float(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- helpers --------------------------------------------------------------------------------------
    def _fetch(self, sql: str, args: Sequence[Any]) -> list[Any]:
        def read() -> list[Any]:
            with self._lock:
                return self._db.execute(sql, list(args)).fetchall()

        return retrying(read)

    def _transaction(self, fn: Any) -> Any:
        def attempt() -> Any:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn()
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                return result

        return retrying(attempt)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _job_tuple(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.endpoint,
        job.provider,
        job.model,
        job.created,
        job.deadline,
        job.on_deadline,
        job.status,
        job.tag,
        job.price_input_per_1m,
        job.price_output_per_1m,
        job.reservation,
        job.reserved_usd,
        int(job.settled),
        job.note,
    )


def _job(r: Sequence[Any]) -> JobRecord:
    return JobRecord(
        job_id=r[0],
        endpoint=r[1],
        provider=r[2],
        model=r[3],
        created=r[4],
        deadline=r[5],
        on_deadline=r[6],
        status=r[7],
        tag=r[8],
        price_input_per_1m=r[9],
        price_output_per_1m=r[10],
        reservation=r[11],
        reserved_usd=r[12],
        settled=bool(r[13]),
        note=r[14],
    )


def _row(r: Sequence[Any]) -> RowRecord:
    return RowRecord(
        row=r[0],
        chunk=r[1],
        custom_id=r[2],
        request_json=r[3],
        state=r[4],
        result=json.loads(r[5]) if r[5] else None,
        error=r[6],
        via=r[7],
        input_tokens=r[8],
        output_tokens=r[9],
        cost_usd=r[10],
        metered=bool(r[11]),
    )
