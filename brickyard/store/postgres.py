"""The PostgreSQL store (`[store] url = "postgresql://…"`): one ledger, cache, budgets and rate limits for every
`brickyard serve` host behind a load balancer.

Usage rows and cache entries are written behind, like the SQLite ledger's: `record_usage` queues the row and
returns; one background thread per store inserts whatever is queued in one transaction. Reads see this
process's writes (`usage`, `summarize` and `spent_usd` flush first; `cache_get` looks at the queue).
`flush()` waits for the queue; `close()` and interpreter exit flush it.

A reservation is one call of a PL/pgSQL function (one round trip, `brickyard.store._pg`): it locks the spend
row of each budget window (`SELECT … FOR UPDATE`, in a fixed order, seeding a new window from the ledger), so
two hosts never both admit the last cent. `take_rate` is one call of another (GCRA).
Requires `pip install 'brickyard[postgres]'` (psycopg 3 and its pool).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from brickyard.store import _budget, _pg, _write_behind
from brickyard.store.base import Hold, Refusal, UsageRecord, UsageSummaryRow, record_from_row, summary_from_row
from brickyard.store.sqlite import _row as usage_row

log = logging.getLogger(__name__)

_COLUMNS = (
    "ts, endpoint, model, status, tag, requested_endpoint, key, input_tokens, output_tokens, tokens_estimated,"
    " cost_usd, latency_s, cache_hit, error, extra"
)
_INSERT = f"INSERT INTO brickyard_usage ({_COLUMNS}) VALUES ({', '.join(['%s'] * len(_COLUMNS.split(',')))})"
_CACHE_PUT = (
    "INSERT INTO brickyard_cache (key, value, created) VALUES (%s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, created = EXCLUDED.created"
)
_GROUPS = {
    "endpoint": "endpoint",
    "model": "model",
    "tag": "COALESCE(tag, '-')",
    "key": "COALESCE(key, '-')",
    "day": "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "hour_start": "(floor(ts / 3600) * 3600)::bigint",
    "day_start": "(floor(ts / 86400) * 86400)::bigint",
    "status": "status",
}
_HELD = (
    "SELECT COALESCE(SUM(amount_usd), 0) FROM brickyard_budget_holds"
    " WHERE scope = %s AND window_start = %s AND expires > %s"
)
_RESERVE = (
    "SELECT refused, spent, held FROM brickyard_reserve(%s, %s::text[], %s::float8[], %s::text[], %s::text[],"
    " %s::int[], %s::float8[], %s, %s, %s, %s)"
)
_KEEP_EXPIRED_S = 86_400.0  # expired holds stop counting at once; deleted a day later (a late settle still charges)
_SWEEP_EVERY_S = 60.0


class PostgresStore:
    """A `Store` in a PostgreSQL database, shared by processes and hosts. Thread-safe (a connection pool).

    `write_behind=False` inserts each usage row before `record_usage` returns.
    """

    def __init__(self, url: str, *, write_behind: bool = True, pool_size: int = 16) -> None:
        self.url = url
        self.buffered = write_behind
        self._pool = _pg.open_pool(url, max_size=pool_size)
        self._queue = threading.Condition()  # guards the fields below
        self._pending: list[tuple[Any, ...]] = []
        self._pending_cache: dict[str, str] = {}
        self._writing_cache: dict[str, str] = {}
        self._queued = self._written = 0
        self._failure: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._closed = False
        self._gathering = False  # the writer is waiting for a batch to fill (`_write_behind.gather`)
        self._flushing = 0  # callers waiting in `flush`
        self._seeded: set[tuple[str, float]] = set()  # budget windows known to have a spend row
        self._swept = 0.0
        ref = weakref.ref(self)

        def flush_at_exit() -> None:
            store = ref()
            if store is not None:
                store.close()

        self._at_exit = flush_at_exit
        atexit.register(flush_at_exit)

    def __repr__(self) -> str:
        return f"PostgresStore({_pg.redact(self.url)!r})"

    # -- writes -----------------------------------------------------------------------------------
    def record_usage(self, record: UsageRecord) -> None:
        row = usage_row(record)  # fails here, in the caller, if `extra` is not JSON
        if not self.buffered:
            self._write([row], {})
            return
        with self._queue:
            self._check_open()
            self._pending.append(row)
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
        """Wait until every row queued so far is in the database; raise if that takes longer than `timeout_s`."""
        if not self.buffered:
            return
        with self._queue:
            if waiting := _write_behind.wait_written(self, timeout_s):
                raise RuntimeError(
                    f"the store {_pg.redact(self.url)} could not be written within {timeout_s:g} s "
                    f"({self._failure or 'no answer'}); {waiting} rows are waiting. "
                    "Fix: check that the PostgreSQL server is up and reachable"
                )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store {_pg.redact(self.url)} is closed. Fix: use the store before closing it")

    def _wake(self) -> None:
        """Start the writer thread if needed and tell it there is work (holding `_queue`)."""
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name="brickyard-pg-ledger", daemon=True)
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
                rows, self._pending = self._pending, []
                self._writing_cache, self._pending_cache = self._pending_cache, {}
                target = self._queued
            delay = 0.01
            while True:
                try:
                    self._write(rows, self._writing_cache)
                    break
                except Exception as exc:  # keep the rows and try again; never drop them
                    with self._queue:
                        self._failure = exc
                        if self._closed:
                            return
                    log.warning("store %s: write failed (%s); retrying", _pg.redact(self.url), exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
            with self._queue:
                self._writing_cache = {}
                self._written = max(self._written, target)
                self._failure = None
                self._queue.notify_all()

    def _write(self, rows: list[tuple[Any, ...]], cache: dict[str, str]) -> None:
        now = time.time()
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if rows:
                cur.executemany(_INSERT, rows)
            if cache:
                cur.executemany(_CACHE_PUT, [(k, v, now) for k, v in cache.items()])

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
        self.flush()
        where, args = _where(since=since, until=until, endpoint=endpoint, tag=tag, key=key)
        rows = self._read(f"SELECT {_COLUMNS} FROM brickyard_usage{where} ORDER BY id", args)
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
        self.flush()
        cols = [_GROUPS[b] for b in by] or ["'all'"]
        where, args = _where(since=since, until=until, endpoint=endpoint, tag=tag, key=key)
        group = ", ".join(cols)
        rows = self._read(
            f"SELECT {group}, COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), SUM(cache_hit),"
            f" SUM(input_tokens), SUM(output_tokens), SUM(cost_usd), AVG(latency_s) FROM brickyard_usage{where}"
            f" GROUP BY {', '.join(str(i + 1) for i in range(len(cols)))}",
            args,
        )
        n = len(cols)
        summary = [summary_from_row(r, n) for r in rows]
        return sorted(summary, key=lambda row: row.group)  # code point order, as SQLite's (no collation)

    def spent_usd(
        self, *, since: float, endpoint: str | None = None, tag: str | None = None, key: str | None = None
    ) -> float:
        """USD spent since `since` (this process's queued rows are written first)."""
        self.flush()
        where, args = _where(since=since, endpoint=endpoint, tag=tag, key=key)
        rows = self._read(f"SELECT COALESCE(SUM(cost_usd), 0) FROM brickyard_usage{where}", args)
        return float(rows[0][0])

    def cache_get(self, key: str) -> dict[str, Any] | None:
        with self._queue:
            blob = self._pending_cache.get(key) or self._writing_cache.get(key)
        if blob is None:
            rows = self._read("SELECT value FROM brickyard_cache WHERE key = %s", [key])
            blob = rows[0][0] if rows else None
        return json.loads(blob) if blob is not None else None

    def cache_clear(self) -> int:
        self.flush()
        with self._pool.connection() as conn:
            return int(conn.execute("DELETE FROM brickyard_cache").rowcount)

    def _read(self, sql: str, args: Sequence[Any]) -> list[Any]:
        with self._pool.connection() as conn:
            return list(conn.execute(sql, list(args)).fetchall())

    # -- budgets and rate limits (see `Store`) ----------------------------------------------------
    def reserve(self, holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        self._check_open()
        pairs = _budget.windows(holds)
        self._flush_unless_seeded(pairs)
        reservation = _budget.new_reservation_id()

        index = {pair: i + 1 for i, pair in enumerate(pairs)}
        ledger = [_budget.ledger_filter(scope) or ("", "") for scope, _ in pairs]

        def attempt() -> str | Refusal:
            now = time.time()
            with self._pool.connection() as conn:
                if now - self._swept > _SWEEP_EVERY_S:
                    self._swept = now
                    conn.execute("DELETE FROM brickyard_budget_holds WHERE expires < %s", (now - _KEEP_EXPIRED_S,))
                refused, spent, held = conn.execute(
                    _RESERVE,
                    (
                        reservation,
                        [scope for scope, _ in pairs],
                        [start for _, start in pairs],
                        [column for column, _ in ledger],
                        [value for _, value in ledger],
                        [index[(h.scope, float(h.window_start))] for h in holds],
                        [float(h.limit_usd) for h in holds],
                        float(amount_usd),
                        now,
                        now + ttl_s,
                        _budget.EPS_USD,
                    ),
                ).fetchone()
            if refused:
                return Refusal(hold=holds[refused - 1], spent_usd=float(spent), held_usd=float(held))
            return reservation

        result = _pg.retrying(attempt)
        with self._queue:
            self._seeded.update(pairs)
        return result

    def settle(self, reservation: str, cost_usd: float) -> None:
        def attempt() -> None:
            with self._pool.connection() as conn:
                conn.execute(
                    "WITH held AS (DELETE FROM brickyard_budget_holds WHERE id = %s RETURNING scope, window_start)"
                    " UPDATE brickyard_budget_spend s SET spent_usd = s.spent_usd + %s FROM held"
                    " WHERE s.scope = held.scope AND s.window_start = held.window_start",
                    (reservation, cost_usd),
                )

        _pg.retrying(attempt)

    def budget_state(self, hold: Hold) -> tuple[float, float]:
        pair = (hold.scope, float(hold.window_start))
        self._flush_unless_seeded([pair])
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT spent_usd FROM brickyard_budget_spend WHERE scope = %s AND window_start = %s", pair
            ).fetchone()
            spent = float(row[0]) if row else _ledger_spent(conn, *pair)
            (held,) = conn.execute(_HELD, (*pair, time.time())).fetchone()
        return spent, float(held)

    def take_rate(self, scope: str, per_minute: float, amount: float, *, burst: float, book_if_waiting: bool) -> float:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be positive, not {per_minute}")
        interval = 60.0 / per_minute
        tolerance = interval * (burst - amount)  # the whole amount must fit in the burst (see `_budget.gcra`)

        def attempt() -> float:
            with self._pool.connection() as conn:
                row = conn.execute(
                    "SELECT brickyard_take_rate(%s, %s, %s, %s, %s, %s)",
                    (scope, time.time(), interval, tolerance, float(amount), book_if_waiting),
                ).fetchone()
            return float(row[0])

        return _pg.retrying(attempt)

    def _flush_unless_seeded(self, pairs: list[tuple[str, float]]) -> None:
        """Write this process's queued usage before a window's spend may be seeded from the ledger."""
        with self._queue:
            unseeded = [p for p in pairs if p not in self._seeded and _budget.ledger_filter(p[0])]
        if unseeded:
            self.flush()

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Write what is queued, stop the writer and close the pool (idempotent)."""
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
            self._pool.close()


def _ledger_spent(conn: Any, scope: str, start: float) -> float:
    """What the usage ledger says `scope` spent since `start` (0 for scopes not in the ledger)."""
    ledger = _budget.ledger_filter(scope)
    if ledger is None:
        return 0.0
    column, value = ledger  # a fixed column name from `LEDGER_SCOPES`, never user text
    (spent,) = conn.execute(
        f"SELECT COALESCE(SUM(cost_usd), 0) FROM brickyard_usage WHERE {column} = %s AND ts >= %s", (value, start)
    ).fetchone()
    return float(spent)


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
    filters = (
        ("ts >= %s", since),
        ("ts < %s", until),
        ("endpoint = %s", endpoint),
        ("tag = %s", tag),
        ("key = %s", key),
    )
    for clause, value in filters:
        if value is not None:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args
