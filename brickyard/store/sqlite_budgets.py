"""Budget reservations and the GCRA rate limiter in the ledger's SQLite file, shared by every process on it.

Each of `reserve`, `settle` and `take_rate` is one short `BEGIN IMMEDIATE` transaction on a connection of its
own (never behind the ledger's write-behind queue), so processes sharing the file are serialized and a budget
check never waits for a batch of usage rows.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from brickyard.store import _budget
from brickyard.store._sqlite import connect, retrying
from brickyard.store.base import Hold, Refusal

T = TypeVar("T")

TABLES = """
CREATE TABLE IF NOT EXISTS budget_spend (
    scope TEXT NOT NULL,
    window_start REAL NOT NULL,
    spent_usd REAL NOT NULL,
    PRIMARY KEY (scope, window_start)
);
CREATE TABLE IF NOT EXISTS budget_holds (
    id TEXT NOT NULL,
    scope TEXT NOT NULL,
    window_start REAL NOT NULL,
    amount_usd REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (id, scope, window_start)
);
CREATE INDEX IF NOT EXISTS budget_holds_window ON budget_holds (scope, window_start, expires);
CREATE TABLE IF NOT EXISTS rate_state (
    scope TEXT PRIMARY KEY,
    tat REAL NOT NULL
);
"""
"""Created with the ledger's tables (`SQLiteStore._setup`)."""

KEEP_EXPIRED_S = 86_400.0
"""Expired holds stop counting at once but are deleted only after this long, so a late settle still charges."""
_SWEEP_EVERY_S = 60.0

_STATE = (
    "SELECT (SELECT spent_usd FROM budget_spend WHERE scope = ? AND window_start = ?),"
    " (SELECT COALESCE(SUM(amount_usd), 0) FROM budget_holds WHERE scope = ? AND window_start = ? AND expires > ?)"
)


class SQLiteBudgets:
    """The budget and rate tables of one ledger file, on a dedicated connection opened at first use.

    `flush` writes this process's queued usage rows; it runs before a window's spend is seeded from the ledger.
    """

    def __init__(self, path: Path, flush: Callable[[], None]) -> None:
        self.path = path
        self._flush = flush
        self._lock = threading.Lock()  # guards `_db` and the fields below
        self._db: sqlite3.Connection | None = None
        self._seeded: set[tuple[str, float]] = set()  # windows known to have a spend row
        self._swept = 0.0

    def reserve(self, holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        pairs = _budget.windows(holds)
        self._flush_unless_seeded(pairs)
        reservation = _budget.new_reservation_id()

        def attempt(db: sqlite3.Connection, now: float) -> str | Refusal:
            if now - self._swept > _SWEEP_EVERY_S:
                db.execute("DELETE FROM budget_holds WHERE expires < ?", (now - KEEP_EXPIRED_S,))
                self._swept = now
            state = {pair: self._state(db, *pair, now, create=True) for pair in pairs}
            for hold in holds:
                spent, held = state[(hold.scope, float(hold.window_start))]
                if _budget.refuses(hold.limit_usd, spent, held, amount_usd):
                    return Refusal(hold=hold, spent_usd=spent, held_usd=held)
            db.executemany(
                "INSERT INTO budget_holds (id, scope, window_start, amount_usd, expires) VALUES (?, ?, ?, ?, ?)",
                [(reservation, scope, start, amount_usd, now + ttl_s) for scope, start in pairs],
            )
            return reservation

        result = self._transaction(attempt)
        with self._lock:
            self._seeded.update(pairs)
        return result

    def settle(self, reservation: str, cost_usd: float) -> None:
        def attempt(db: sqlite3.Connection, now: float) -> None:
            db.execute(
                "UPDATE budget_spend SET spent_usd = spent_usd + ? WHERE (scope, window_start) IN"
                " (SELECT scope, window_start FROM budget_holds WHERE id = ?)",
                (cost_usd, reservation),
            )
            db.execute("DELETE FROM budget_holds WHERE id = ?", (reservation,))

        self._transaction(attempt)

    def budget_state(self, hold: Hold) -> tuple[float, float]:
        pair = (hold.scope, float(hold.window_start))
        self._flush_unless_seeded([pair])

        def read() -> tuple[float, float]:
            with self._lock:
                return self._state(self._connection(), *pair, time.time(), create=False)

        return retrying(read)

    def take_rate(self, scope: str, per_minute: float, amount: float, *, burst: float, book_if_waiting: bool) -> float:
        def attempt(db: sqlite3.Connection, now: float) -> float:
            row = db.execute("SELECT tat FROM rate_state WHERE scope = ?", (scope,)).fetchone()
            wait, tat = _budget.gcra(row[0] if row else None, now, per_minute, amount, burst, book_if_waiting)
            if tat is not None:
                db.execute("INSERT OR REPLACE INTO rate_state (scope, tat) VALUES (?, ?)", (scope, tat))
            return wait

        return self._transaction(attempt)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- helpers --------------------------------------------------------------------------------------
    def _flush_unless_seeded(self, pairs: list[tuple[str, float]]) -> None:
        """Write this process's queued usage before a window's spend may be seeded from the ledger."""
        with self._lock:
            unseeded = [p for p in pairs if p not in self._seeded and _budget.ledger_filter(p[0])]
        if unseeded:
            self._flush()

    def _state(
        self, db: sqlite3.Connection, scope: str, start: float, now: float, *, create: bool
    ) -> tuple[float, float]:
        """(spent, held) of one window; a missing spend row is seeded from the ledger (and written if `create`)."""
        spent, held = db.execute(_STATE, (scope, start, scope, start, now)).fetchone()
        if spent is None:
            spent = 0.0
            ledger = _budget.ledger_filter(scope)
            if ledger is not None:
                column, value = ledger  # a fixed column name from `LEDGER_SCOPES`, never user text
                (spent,) = db.execute(
                    f"SELECT COALESCE(SUM(cost_usd), 0) FROM usage WHERE {column} = ? AND ts >= ?", (value, start)
                ).fetchone()
            if create:
                db.execute(
                    "INSERT INTO budget_spend (scope, window_start, spent_usd) VALUES (?, ?, ?)",
                    (scope, start, float(spent)),
                )
        return float(spent), float(held)

    def _connection(self) -> sqlite3.Connection:
        """The dedicated connection (holding `_lock`)."""
        if self._db is None:
            self._db = connect(self.path)
        return self._db

    def _transaction(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        """Run `fn(db, now)` in one `BEGIN IMMEDIATE` transaction, retrying while another process holds the lock."""

        def attempt() -> T:
            with self._lock:
                db = self._connection()
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(db, time.time())
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return result

        return retrying(attempt)
