"""The console's own SQLite file (`<workspace>/console.sqlite`, WAL): sessions and query jobs.

Shared by every worker process of `brickyard serve --workers N` (and kept across restarts), so a browser
signed in on one worker is signed in on all, and a job started on one is followed and cancelled from any.
Session ids are stored as SHA-256 hashes: the file alone signs nobody in.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from brickyard.store._sqlite import open_file, retrying

CONSOLE_NAME = "console.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, key_name TEXT, csrf TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_seen ON sessions (seen);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT, sql TEXT NOT NULL, started REAL NOT NULL, status TEXT NOT NULL,
    finished REAL, heartbeat REAL NOT NULL, progress REAL, spent_usd REAL NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0, columns TEXT, rows TEXT, truncated INTEGER NOT NULL DEFAULT 0,
    error TEXT, kind TEXT NOT NULL DEFAULT 'sql', log TEXT NOT NULL DEFAULT '', result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_started ON jobs (started);
"""
JOB_COLUMNS = (
    "id, owner, sql, started, status, finished, heartbeat, progress, spent_usd, cancel, columns, rows, truncated, "
    "error, kind, log, result"
)


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleStore:
    """Rows of sessions and jobs; thread-safe (one connection behind a lock), safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_file(path)
        with self._lock:
            retrying(lambda: self._db.executescript(_SCHEMA))

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        def run() -> list[Any]:
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return retrying(run)

    # -- sessions ---------------------------------------------------------------------------------
    def add_session(self, session_id: str, key_name: str | None, csrf: str, now: float, max_sessions: int) -> None:
        self.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (digest(session_id), key_name, csrf, now, now))
        self.execute(
            "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions ORDER BY seen DESC LIMIT -1 OFFSET ?)",
            (max_sessions,),
        )

    def session(self, session_id: str) -> tuple[str | None, str, float, float] | None:
        rows = self.execute(
            "SELECT key_name, csrf, created, seen FROM sessions WHERE id_hash = ?", (digest(session_id),)
        )
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    def touch_session(self, session_id: str, now: float) -> None:
        self.execute("UPDATE sessions SET seen = ? WHERE id_hash = ?", (now, digest(session_id)))

    def end_session(self, session_id: str) -> None:
        self.execute("DELETE FROM sessions WHERE id_hash = ?", (digest(session_id),))

    def drop_idle_sessions(self, before: float) -> None:
        self.execute("DELETE FROM sessions WHERE seen < ?", (before,))

    def session_count(self) -> int:
        return int(self.execute("SELECT COUNT(*) FROM sessions")[0][0])

    # -- jobs -------------------------------------------------------------------------------------
    def add_job(self, job_id: str, owner: str | None, sql: str, now: float, kind: str = "sql") -> None:
        """A running job; `sql` is the query (or, for another kind, what the job does)."""
        self.execute(
            "INSERT INTO jobs (id, owner, sql, started, status, heartbeat, kind) VALUES (?, ?, ?, ?, 'running', ?, ?)",
            (job_id, owner, sql, now, now, kind),
        )

    def append_log(self, job_id: str, lines: str) -> None:
        self.execute("UPDATE jobs SET log = substr(log || ?, -20000) WHERE id = ?", (lines, job_id))

    def set_result(self, job_id: str, result: dict[str, Any]) -> None:
        self.execute("UPDATE jobs SET result = ? WHERE id = ?", (json.dumps(result, default=str), job_id))

    def beat(self, job_id: str, now: float, progress: float | None, spent_usd: float) -> bool:
        """Record a running job's progress; returns whether someone asked to cancel it."""
        self.execute(
            "UPDATE jobs SET heartbeat = ?, progress = ?, spent_usd = ? WHERE id = ?",
            (now, progress, spent_usd, job_id),
        )
        rows = self.execute("SELECT cancel FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    def finish_job(
        self,
        job_id: str,
        *,
        status: str,
        now: float,
        columns: list[str],
        rows: list[list[Any]],
        truncated: bool,
        spent_usd: float,
        error: str | None,
    ) -> None:
        self.execute(
            "UPDATE jobs SET status = ?, finished = ?, heartbeat = ?, columns = ?, rows = ?, truncated = ?, "
            "spent_usd = ?, error = ? WHERE id = ?",
            (
                status,
                now,
                now,
                json.dumps(columns),
                json.dumps(rows, ensure_ascii=False, default=str),
                int(truncated),
                spent_usd,
                error,
                job_id,
            ),
        )

    def request_cancel(self, job_id: str) -> None:
        self.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))

    def job(self, job_id: str, *, with_rows: bool = True) -> dict[str, Any] | None:
        columns = JOB_COLUMNS if with_rows else JOB_COLUMNS.replace(", rows,", ", NULL AS rows,")
        rows = self.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            return None
        record = dict(zip([c.strip() for c in JOB_COLUMNS.split(",")], rows[0], strict=True))
        record["columns"] = json.loads(record["columns"]) if record["columns"] else []
        record["rows"] = json.loads(record["rows"]) if record["rows"] else []
        record["result"] = json.loads(record["result"]) if record["result"] else None
        return record

    def drop_jobs(self, finished_before: float, keep: int) -> None:
        self.execute("DELETE FROM jobs WHERE finished IS NOT NULL AND finished < ?", (finished_before,))
        self.execute(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs ORDER BY started DESC LIMIT -1 OFFSET ?)", (keep,)
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
