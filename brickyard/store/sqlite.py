"""The SQLite ledger (WAL mode): many processes append usage and share the cache safely.

Writes are buffered (write-behind): `record_usage` and `cache_put` queue the row and return in microseconds;
one background thread per store writes whatever is queued in one transaction (group commit) as soon as it
arrives, so rows reach the file within about a millisecond under light load. Reads in the same process see
queued rows (`spent_usd` adds them, `usage`/`summarize` flush first). `flush()` waits for the queue, `close()`
and interpreter exit flush it; a row is lost only if the process is killed hard before its batch is written.
Lock contention between processes is absorbed by SQLite's busy timeout plus a retry loop, never an error.

Budget reservations and rate limits live in the same file (`brickyard.store.sqlite_budgets`), each one short
write transaction on a connection of its own.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from brickyard.store import _write_behind, sqlite_budgets
from brickyard.store._sqlite import connect as _connect
from brickyard.store._sqlite import retrying as _retrying
from brickyard.store.base import Hold, Refusal, UsageRecord, UsageSummaryRow, record_from_row, summary_from_row

log = logging.getLogger(__name__)
T = TypeVar("T")

_TABLES = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    tag TEXT,
    requested_endpoint TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    latency_s REAL NOT NULL,
    cache_hit INTEGER NOT NULL,
    error TEXT,
    extra TEXT,
    key TEXT
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
"""
_MIGRATIONS = [("usage", "key", "TEXT")]  # columns added after the first release: (table, column, type)
_INDEXES = """
CREATE INDEX IF NOT EXISTS usage_endpoint_ts ON usage (endpoint, ts);
CREATE INDEX IF NOT EXISTS usage_tag_ts ON usage (tag, ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key, ts);
"""
_COLUMNS = (
    "ts, endpoint, model, status, tag, requested_endpoint, key, input_tokens, output_tokens, tokens_estimated,"
    " cost_usd, latency_s, cache_hit, error, extra"
)
_INSERT = f"INSERT INTO usage ({_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS.split(',')))})"

_GROUPS = {
    "endpoint": "+endpoint",  # `+`: group by scanning the table, not by walking the (endpoint, ts) index row by row
    "model": "model",
    "tag": "COALESCE(tag, '-')",
    "key": "COALESCE(key, '-')",
    "day": "date(ts, 'unixepoch')",
    "hour_start": "CAST(ts / 3600 AS INTEGER) * 3600",
    "day_start": "CAST(ts / 86400 AS INTEGER) * 86400",
    "status": "status",
}
_OPEN: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
"""The stores open in this process, so a read through one sees rows queued by another on the same file."""


class SQLiteStore:
    """A `Store` in one SQLite file. Thread-safe: a read connection and a write connection, each with a lock.

    Reads never wait for writes: a writer waiting for another process's write lock does not hold up a budget
    check (WAL readers see the last committed state).

    `write_behind=False` writes each row before `record_usage` returns (slower under contention).
    """

    def __init__(self, path: Path, *, write_behind: bool = True) -> None:
        self.path = path
        self.buffered = write_behind
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # guards `_db`, the read connection
        self._write_lock = threading.Lock()  # guards `_wdb`, the write connection
        self._queue = threading.Condition()  # guards the fields below
        self._pending: list[tuple[UsageRecord, tuple[Any, ...]]] = []  # (record, its row), in arrival order
        self._pending_cache: dict[str, str] = {}
        self._writing: list[tuple[UsageRecord, tuple[Any, ...]]] = []  # taken from the queue, not yet committed
        self._writing_cache: dict[str, str] = {}
        self._queued = self._written = 0
        self._commits_started = self._commits_done = 0  # to read the file and the queue without double counting
        self._failure: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._closed = False
        self._gathering = False  # the writer is waiting for a batch to fill (`_write_behind.gather`)
        self._flushing = 0  # callers waiting in `flush`
        self._wdb = _retrying(lambda: _connect(path))
        _retrying(lambda: self._setup())
        self._db = _retrying(lambda: _connect(path))
        self._budgets = sqlite_budgets.SQLiteBudgets(path, self._flush_path)
        ref = weakref.ref(self)

        def flush_at_exit() -> None:
            store = ref()
            if store is not None:
                store.close()

        self._at_exit = flush_at_exit
        atexit.register(flush_at_exit)
        _OPEN.add(self)

    def _setup(self) -> None:
        db = self._wdb
        with self._write_lock:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # one process at a time creates and migrates
            try:
                for statement in (_TABLES + sqlite_budgets.TABLES).split(";"):
                    if statement.strip():
                        db.execute(statement)
                for table, column, kind in _MIGRATIONS:
                    have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                for statement in _INDEXES.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- writes -----------------------------------------------------------------------------------
    def record_usage(self, record: UsageRecord) -> None:
        row = _row(record)  # fails here, in the caller, if `extra` is not JSON
        if not self.buffered:
            self._write([row], {})
            return
        with self._queue:
            self._check_open()
            self._pending.append((record, row))
            self._queued += 1
            self._wake()

    def cache_put(self, key: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value)
        if not self.buffered:
            self._write([], {key: blob})
            return
        with self._queue:
            self._check_open()
            self._pending_cache[key] = blob
            self._queued += 1
            self._wake()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every row queued so far is in the file; raise if that takes longer than `timeout_s`."""
        if not self.buffered:
            return
        with self._queue:
            if _write_behind.wait_written(self, timeout_s):
                waiting = len(self._pending) + len(self._writing)
                raise RuntimeError(
                    f"the ledger {self.path} could not be written within {timeout_s:g} s "
                    f"({self._failure or 'another process holds its write lock'}); {waiting} rows are waiting. "
                    f"Fix: check the disk space and permissions of {self.path.parent}, or the process holding it"
                )

    def _flush_path(self) -> None:
        """Flush this store and any other open store of the same file in this process (read your writes)."""
        self.flush()
        for other in list(_OPEN):
            if other is not self and other.path == self.path and not other._closed:
                other.flush()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the ledger {self.path} is closed. Fix: use the store before closing it")

    def _wake(self) -> None:
        """Start the writer thread if needed and tell it there is work (holding `_queue`)."""
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name=f"brickyard-ledger-{self.path.name}")
            self._writer.daemon = True  # interpreter exit flushes through atexit, not by joining this thread
            self._writer.start()
        if not self._gathering or len(self._pending) >= _write_behind.BATCH_ROWS:
            self._queue.notify_all()

    def _hurried(self) -> bool:
        """Whether a batch must be written without waiting for more rows (holding `_queue`)."""
        return self._closed or self._flushing > 0

    def _write_loop(self) -> None:
        while True:
            with self._queue:
                while not self._pending and not self._pending_cache and not self._closed:
                    self._queue.wait()
                if not self._pending and not self._pending_cache:
                    return
                self._gathering = True
                _write_behind.gather(self._queue, lambda: len(self._pending), self._hurried)
                self._gathering = False
                self._writing, self._pending = self._pending, []
                self._writing_cache, self._pending_cache = self._pending_cache, {}
                target = self._queued
            rows = [row for _, row in self._writing]
            done = functools.partial(self._done, target)
            delay = 0.01
            while True:
                try:
                    self._write(rows, self._writing_cache, after_commit=done)
                    break
                except Exception as exc:  # keep the rows and try again; never drop them
                    with self._queue:
                        self._failure = exc
                        if self._closed:  # close() gave up waiting and said so: nothing left to write to
                            return
                    log.warning("ledger %s: write failed (%s); retrying", self.path, exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)

    def _done(self, target: int) -> None:
        """Called right after commit: the rows are readable now."""
        with self._queue:
            self._writing, self._writing_cache = [], {}
            self._written = max(self._written, target)
            self._failure = None
            self._queue.notify_all()

    def _write(
        self, rows: list[tuple[Any, ...]], cache: dict[str, str], after_commit: Callable[[], None] | None = None
    ) -> None:
        now = time.time()

        def attempt() -> None:
            db = self._wdb
            with self._write_lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if rows:
                        db.executemany(_INSERT, rows)
                    if cache:
                        db.executemany(
                            "INSERT OR REPLACE INTO cache (key, value, created) VALUES (?, ?, ?)",
                            [(k, v, now) for k, v in cache.items()],
                        )
                    with self._queue:
                        self._commits_started += 1
                    committed = False
                    try:
                        db.execute("COMMIT")
                        committed = True
                    finally:
                        # one critical section: a reader never sees the commit counted as done while the
                        # committed rows are still in the queue (they would be counted twice)
                        with self._queue:
                            self._commits_done += 1
                            if committed and after_commit is not None:
                                after_commit()
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise

        _retrying(attempt)

    # -- reads ------------------------------------------------------------------------------------
    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
        key: str | None = None,
    ) -> list[UsageRecord]:
        self._flush_path()
        where, args = _where(since=since, until=until, endpoint=endpoint, tag=tag, key=key)
        rows = self._read(f"SELECT {_COLUMNS} FROM usage{where} ORDER BY id", args)
        return [record_from_row(r) for r in rows]

    def summarize(
        self,
        by: list[str],
        *,
        since: float | None = None,
        until: float | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
        key: str | None = None,
    ) -> list[UsageSummaryRow]:
        unknown = [b for b in by if b not in _GROUPS]
        if unknown:
            from brickyard._errors import UserError

            raise UserError(f"cannot group usage by {unknown}. Fix: use some of {sorted(_GROUPS)}")
        self._flush_path()
        cols = [_GROUPS[b] for b in by] or ["'all'"]
        where, args = _where(since=since, until=until, endpoint=endpoint, tag=tag, key=key)
        group = ", ".join(cols)
        rows = self._read(
            f"SELECT {group}, COUNT(*), SUM(status != 'ok'), SUM(cache_hit), SUM(input_tokens),"
            f" SUM(output_tokens), SUM(cost_usd), AVG(latency_s) FROM usage{where}"
            f" GROUP BY {group} ORDER BY {group}",
            args,
        )
        n = len(cols)
        return [summary_from_row(r, n) for r in rows]

    def spent_usd(
        self, *, since: float, endpoint: str | None = None, tag: str | None = None, key: str | None = None
    ) -> float:
        """USD spent since `since` in the ledger plus what this process has queued (no waiting for writes)."""
        where, args = _where(since=since, endpoint=endpoint, tag=tag, key=key)
        for attempt in range(400):
            with self._queue:  # the queue first, then the file: a row is in one or the other (or, rarely, both)
                queued = [r for r, _ in (*self._writing, *self._pending)]
                commits = (self._commits_started, self._commits_done)
            rows = self._read(f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage{where}", args)
            with self._queue:
                steady = commits[0] == commits[1] == self._commits_started == self._commits_done
            if steady:  # no commit ran meanwhile: nothing counted twice
                return float(rows[0][0]) + _sum_matching(queued, since, endpoint, tag, key)
            time.sleep(0.0005 if attempt < 100 else 0.005)  # a commit is in progress: let it finish
        self.flush()  # the writer never paused: wait for it, then read the file alone
        rows = self._read(f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage{where}", args)
        with self._queue:
            queued = [r for r, _ in (*self._writing, *self._pending)]
        return float(rows[0][0]) + _sum_matching(queued, since, endpoint, tag, key)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._queue:
            blob = self._pending_cache.get(key) or self._writing_cache.get(key)
        if blob is None:
            row = _retrying(lambda: self._fetchone("SELECT value FROM cache WHERE key = ?", (key,)))
            blob = row[0] if row else None
        return json.loads(blob) if blob is not None else None

    def cache_clear(self) -> int:
        self.flush()

        def attempt() -> int:
            with self._write_lock:
                return self._wdb.execute("DELETE FROM cache").rowcount

        return _retrying(attempt)

    # -- budgets and rate limits (see `Store`) ----------------------------------------------------
    def reserve(self, holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        self._check_open()
        return self._budgets.reserve(holds, amount_usd, ttl_s=ttl_s)

    def settle(self, reservation: str, cost_usd: float) -> None:
        self._budgets.settle(reservation, cost_usd)

    def budget_state(self, hold: Hold) -> tuple[float, float]:
        return self._budgets.budget_state(hold)

    def take_rate(self, scope: str, per_minute: float, amount: float, *, burst: float, book_if_waiting: bool) -> float:
        return self._budgets.take_rate(scope, per_minute, amount, burst=burst, book_if_waiting=book_if_waiting)

    def close(self) -> None:
        """Write what is queued, stop the writer and close the file (idempotent)."""
        with self._queue:
            if self._closed:
                return
        try:
            self.flush()
        finally:
            with self._queue:
                self._closed = True
                self._queue.notify_all()
            writer = self._writer
            if writer is not None and writer is not threading.current_thread():
                writer.join(5.0)
            atexit.unregister(self._at_exit)
            _OPEN.discard(self)
            with self._write_lock:
                self._wdb.close()
            with self._lock:
                self._db.close()
            self._budgets.close()

    def _read(self, sql: str, args: Iterable[Any]) -> list[Any]:
        def attempt() -> list[Any]:
            with self._lock:
                return self._db.execute(sql, list(args)).fetchall()

        return _retrying(attempt)

    def _fetchone(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()


def _row(record: UsageRecord) -> tuple[Any, ...]:
    return (
        record.ts,
        record.endpoint,
        record.model,
        record.status,
        record.tag,
        record.requested_endpoint,
        record.key,
        record.input_tokens,
        record.output_tokens,
        int(record.tokens_estimated),
        record.cost_usd,
        record.latency_s,
        int(record.cache_hit),
        record.error,
        json.dumps(record.extra) if record.extra else None,
    )


def _sum_matching(
    records: list[UsageRecord], since: float, endpoint: str | None, tag: str | None, key: str | None
) -> float:
    return sum(
        r.cost_usd
        for r in records
        if r.ts >= since
        and (endpoint is None or r.endpoint == endpoint)
        and (tag is None or r.tag == tag)
        and (key is None or r.key == key)
    )


def _where(
    *,
    since: float | None = None,
    until: float | None = None,
    endpoint: str | None = None,
    tag: str | None = None,
    key: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    filters = (("ts >= ?", since), ("ts < ?", until), ("endpoint = ?", endpoint), ("tag = ?", tag), ("key = ?", key))
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
