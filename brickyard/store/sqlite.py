"""The SQLite ledger (WAL mode): many processes append usage and share the cache safely."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from brickyard.store.base import UsageRecord, UsageSummaryRow

_SCHEMA = """
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
    extra TEXT
);
CREATE INDEX IF NOT EXISTS usage_endpoint_ts ON usage (endpoint, ts);
CREATE INDEX IF NOT EXISTS usage_tag_ts ON usage (tag, ts);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created REAL NOT NULL
);
"""

_GROUPS = {
    "endpoint": "endpoint",
    "model": "model",
    "tag": "COALESCE(tag, '-')",
    "day": "date(ts, 'unixepoch')",
    "status": "status",
}


class SQLiteStore:
    """A `Store` in one SQLite file. One connection per store, guarded by a lock (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def record_usage(self, record: UsageRecord) -> None:
        row = (
            record.ts,
            record.endpoint,
            record.model,
            record.status,
            record.tag,
            record.requested_endpoint,
            record.input_tokens,
            record.output_tokens,
            int(record.tokens_estimated),
            record.cost_usd,
            record.latency_s,
            int(record.cache_hit),
            record.error,
            json.dumps(record.extra) if record.extra else None,
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO usage (ts, endpoint, model, status, tag, requested_endpoint, input_tokens,"
                " output_tokens, tokens_estimated, cost_usd, latency_s, cache_hit, error, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        endpoint: str | None = None,
        tag: str | None = None,
    ) -> list[UsageRecord]:
        where, args = _where(since=since, until=until, endpoint=endpoint, tag=tag)
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, endpoint, model, status, tag, requested_endpoint, input_tokens, output_tokens,"
                f" tokens_estimated, cost_usd, latency_s, cache_hit, error, extra FROM usage{where}"
                " ORDER BY id",
                args,
            ).fetchall()
        return [
            UsageRecord(
                ts=r[0],
                endpoint=r[1],
                model=r[2],
                status=r[3],
                tag=r[4],
                requested_endpoint=r[5],
                input_tokens=r[6],
                output_tokens=r[7],
                tokens_estimated=bool(r[8]),
                cost_usd=r[9],
                latency_s=r[10],
                cache_hit=bool(r[11]),
                error=r[12],
                extra=json.loads(r[13]) if r[13] else {},
            )
            for r in rows
        ]

    def summarize(self, by: list[str], *, since: float | None = None) -> list[UsageSummaryRow]:
        unknown = [b for b in by if b not in _GROUPS]
        if unknown:
            from brickyard._errors import UserError

            raise UserError(f"cannot group usage by {unknown}. Fix: use some of {sorted(_GROUPS)}")
        cols = [_GROUPS[b] for b in by] or ["'all'"]
        where, args = _where(since=since)
        group = ", ".join(cols)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {group}, COUNT(*), SUM(status != 'ok'), SUM(cache_hit), SUM(input_tokens),"
                f" SUM(output_tokens), SUM(cost_usd), AVG(latency_s) FROM usage{where}"
                f" GROUP BY {group} ORDER BY {group}",
                args,
            ).fetchall()
        n = len(cols)
        return [
            UsageSummaryRow(
                group=tuple(str(v) for v in r[:n]),
                calls=r[n],
                errors=r[n + 1] or 0,
                cache_hits=r[n + 2] or 0,
                input_tokens=r[n + 3] or 0,
                output_tokens=r[n + 4] or 0,
                cost_usd=r[n + 5] or 0.0,
                latency_s_avg=r[n + 6] or 0.0,
            )
            for r in rows
        ]

    def spent_usd(self, *, since: float, endpoint: str | None = None, tag: str | None = None) -> float:
        where, args = _where(since=since, endpoint=endpoint, tag=tag)
        with self._lock:
            (total,) = self._db.execute(f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage{where}", args).fetchone()
        return float(total)

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM cache WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def cache_put(self, key: str, value: dict[str, Any]) -> None:
        blob = json.dumps(value)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache (key, value, created) VALUES (?, ?, ?)", (key, blob, time.time())
            )

    def cache_clear(self) -> int:
        with self._lock:
            cur = self._db.execute("DELETE FROM cache")
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _where(
    *, since: float | None = None, until: float | None = None, endpoint: str | None = None, tag: str | None = None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for clause, value in (("ts >= ?", since), ("ts < ?", until), ("endpoint = ?", endpoint), ("tag = ?", tag)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
