"""Payload (inference) logs on disk: one JSON line per call, in append-only files per UTC day and process.

`<workspace>/payloads/<YYYY-MM-DD>_<pid>.jsonl`. Each record is written with one `os.write` on a file opened
with O_APPEND, so lines never interleave, nothing is buffered in the process, and many server workers and
CLI processes can log at once without locks. Files older than `retention_days` are deleted when a log is
opened and when the day changes. The warehouse reads the folder as the `payloads` view (`view_sql`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from brickyard.config import PayloadsConfig

PAYLOADS_DIR = "payloads"
PLACEHOLDER = "_schema.jsonl"
"""An empty file that keeps the folder's glob non-empty, so the view works before the first call."""

COLUMNS: dict[str, str] = {
    "id": "VARCHAR",
    "ts": "DOUBLE",
    "endpoint": "VARCHAR",
    "served_by": "VARCHAR",
    "model": "VARCHAR",
    "key": "VARCHAR",
    "tag": "VARCHAR",
    "kind": "VARCHAR",
    "status": "VARCHAR",
    "error_type": "VARCHAR",
    "error": "VARCHAR",
    "latency_s": "DOUBLE",
    "request": "JSON",
    "params": "JSON",
    "response_text": "VARCHAR",
    "response": "JSON",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "cost_usd": "DOUBLE",
    "cached": "BOOLEAN",
    "finish_reason": "VARCHAR",
    "truncated": "BOOLEAN",
}
"""The record's fields and their warehouse types (also the `payloads` view's columns, `ts` as a timestamp)."""


class PayloadLog:
    """Appends payload records for one workspace; thread-safe, safe across processes."""

    def __init__(self, folder: Path, config: PayloadsConfig) -> None:
        self.folder = folder
        self.config = config
        self._lock = threading.Lock()
        self._day: str | None = None
        self._day_number: int | None = None
        self._fd: int | None = None
        self._pid = os.getpid()
        ensure_folder(folder)
        self.purge()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a dict with some of `COLUMNS`); `ts` defaults to now."""
        ts = record.setdefault("ts", time.time())
        self.write_line(ts, json.dumps(record, ensure_ascii=False, default=str))

    def write_line(self, ts: float, line: str) -> None:
        """Append one record already written as a JSON line (without its newline), in the file of `ts`'s day."""
        data = (line + "\n").encode()
        day_number = int(ts // 86_400)  # UTC days since the epoch: the file changes when this does
        with self._lock:
            if day_number != self._day_number or self._fd is None or os.getpid() != self._pid:
                self._open(datetime.fromtimestamp(ts, tz=UTC).date().isoformat())
                self._day_number = day_number
            assert self._fd is not None
            os.write(self._fd, data)

    def _open(self, day: str) -> None:
        changed_day = self._day is not None and day != self._day
        self._close_fd()
        self._pid = os.getpid()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{day}_{self._pid}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._day = day
        if changed_day:
            self.purge()

    def purge(self, today: date | None = None) -> int:
        """Delete the files of days older than `retention_days` (0 keeps everything); returns how many."""
        if self.config.retention_days <= 0 or not self.folder.is_dir():
            return 0
        today = today or datetime.now(tz=UTC).date()
        oldest = today - timedelta(days=self.config.retention_days)
        removed = 0
        for path in self.folder.glob("*.jsonl"):
            try:
                day = date.fromisoformat(path.name[:10])
            except ValueError:
                continue
            if day < oldest:
                with contextlib.suppress(FileNotFoundError):  # another process purged it first
                    path.unlink()
                    removed += 1
        return removed

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()


def ensure_folder(folder: Path) -> None:
    """Create the folder and its empty placeholder file."""
    folder.mkdir(parents=True, exist_ok=True)
    placeholder = folder / PLACEHOLDER
    if not placeholder.exists():
        placeholder.touch()


def view_sql(folder: Path, name: str = "payloads") -> str:
    """A `CREATE TEMP VIEW` reading every payload file of the folder (typed; a line being written is skipped)."""
    glob = str(folder / "*.jsonl").replace("'", "''")
    columns = ", ".join(f"'{c}': '{t}'" for c, t in COLUMNS.items())
    select = ", ".join("to_timestamp(ts) AS ts" if c == "ts" else c for c in COLUMNS)
    return (
        f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM read_json('{glob}', "
        f"format = 'newline_delimited', columns = {{{columns}}}, ignore_errors = true) WHERE id IS NOT NULL"
    )


def register_view(con: Any, folder: Path, name: str = "payloads") -> None:
    """Create the `payloads` view on a DuckDB connection (an empty typed view if the folder cannot be made)."""
    with contextlib.suppress(OSError):  # a read-only workspace with no payloads yet: the empty view below
        ensure_folder(folder)
    if any(folder.glob("*.jsonl")):
        con.execute(view_sql(folder, name))
        return
    empty = ", ".join(f"NULL::{'TIMESTAMPTZ' if c == 'ts' else t} AS {c}" for c, t in COLUMNS.items())
    con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {empty} WHERE false")
