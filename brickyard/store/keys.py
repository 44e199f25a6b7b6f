"""API keys for `brickyard serve`: created and revoked by an admin, stored as SHA-256 hashes.

A key is shown once, when it is created; only its hash (and a short hint for listings) is stored. A key
carries its scopes (endpoints, aliases and `agent:NAME`s it may call; `*` for all, `agent:*` for every
agent), whether it may use `POST /api/sql` and read every key's usage (`admin`), and its limits: requests
and tokens per minute and a USD budget per day or month.

`KeyStore` keeps them in `<workspace>/keys.sqlite`; `brickyard.store.postgres_keys.PostgresKeyStore` in the
PostgreSQL database of `[store] url`. Both implement `Keys`. A key's rate limits and
budget are applied per call through the `Store` (`brickyard.models.limits`, `brickyard.models.budget`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from brickyard._errors import UserError
from brickyard.config import Window

KEYS_NAME = "keys.sqlite"
KEY_PREFIX = "bky-"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(day|month))?\s*$")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    sql INTEGER NOT NULL DEFAULT 0,
    admin INTEGER NOT NULL DEFAULT 0,
    rpm INTEGER,
    tpm INTEGER,
    budget_usd REAL,
    budget_window TEXT,
    created REAL NOT NULL,
    revoked REAL
);
"""


@dataclass(frozen=True)
class ApiKey:
    """One key as stored (never the secret)."""

    name: str
    hint: str
    scopes: tuple[str, ...]
    sql: bool = False
    admin: bool = False
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_window: Window = Window.month
    created: float = 0.0
    revoked: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def allows(self, name: str, canonical: str | None = None) -> bool:
        """May this key call `name` (an endpoint, alias or `agent:NAME`), or the endpoint it resolves to?"""
        if self.admin:
            return True
        if name.startswith("agent:"):
            return name in self.scopes or "agent:*" in self.scopes
        return "*" in self.scopes or name in self.scopes or (canonical is not None and canonical in self.scopes)

    def describe_limits(self) -> str:
        parts = [f"{label} {value:,}" for label, value in (("rpm", self.rpm), ("tpm", self.tpm)) if value]
        if self.budget_usd is not None:
            parts.append(f"${self.budget_usd:g}/{self.budget_window.value}")
        return ", ".join(parts) or "-"


def hash_secret(secret: str) -> str:
    """The stored form of a key. Keys are 256 random bits, so a fast hash is enough (no dictionary to guess)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_budget(value: str) -> tuple[float, Window]:
    """`50/month`, `5/day` or `50` (a month) → (limit, window)."""
    match = _BUDGET.match(value)
    if not match or float(match[1]) <= 0:
        raise UserError(
            f"budget `{value}` is not understood. Fix: write a positive USD amount and a window, e.g. 50/month"
        )
    return float(match[1]), Window(match[2] or "month")


def new_key(
    name: str,
    scopes: tuple[str, ...],
    *,
    sql: bool = False,
    admin: bool = False,
    rpm: int | None = None,
    tpm: int | None = None,
    budget: tuple[float, Window] | None = None,
) -> tuple[ApiKey, str]:
    """A checked new key and its secret, not yet stored."""
    if not _NAME.match(name):
        raise UserError(
            f"key name {name!r} must be letters, digits, `_`, `.` or `-` (at most 64). Fix: e.g. --name team-a"
        )
    for label, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and value <= 0:
            raise UserError(f"--{label} must be a positive number, not {value}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        hint=f"{secret[:8]}…{secret[-4:]}",
        scopes=scopes,
        sql=sql,
        admin=admin,
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget[0] if budget else None,
        budget_window=budget[1] if budget else Window.month,
        created=time.time(),
    )
    return key, secret


def exists_error(name: str, revoked: bool) -> UserError:
    state = "revoked" if revoked else "active"
    return UserError(f"a key named {name} exists ({state}). Fix: choose another name, e.g. {name}-2")


def unknown_error(name: str, known: list[str]) -> UserError:
    return UserError(f"no key named {name} (keys: {', '.join(known) or 'none'}). Fix: brickyard keys list")


class Keys(Protocol):
    """What the server and the CLI need from a key store (SQLite or PostgreSQL)."""

    def create(
        self,
        name: str,
        scopes: tuple[str, ...],
        *,
        sql: bool = False,
        admin: bool = False,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: tuple[float, Window] | None = None,
    ) -> tuple[ApiKey, str]: ...

    def revoke(self, name: str) -> ApiKey: ...

    def get(self, name: str) -> ApiKey | None: ...

    def by_hash(self, digest: str) -> ApiKey | None: ...

    def listing(self) -> list[ApiKey]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def parse_scopes(value: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    if not scopes:
        raise UserError("a key needs at least one endpoint. Fix: --endpoints gpt-5,agent:kb (or '*' for all)")
    return scopes


class KeyStore:
    """The keys table in `<workspace>/keys.sqlite` (WAL; safe across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # busy_timeout 0: lock waits are retried here with short sleeps (SQLite's own handler sleeps >= 1 ms).
        self._db = sqlite3.connect(path, timeout=0, check_same_thread=False, isolation_level=None)
        with self._lock:
            _while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"), self.path)
            self._db.execute("PRAGMA synchronous=NORMAL")
        self.transaction(_create_tables)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------------------
    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one write transaction (BEGIN IMMEDIATE), waiting while another process holds the lock."""
        with self._lock:
            _while_locked(lambda: self._db.execute("BEGIN IMMEDIATE"), self.path)
            try:
                result = fn(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return result

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """A read (WAL readers never wait for writers)."""
        with self._lock:
            return _while_locked(lambda: self._db.execute(sql, args).fetchall(), self.path)

    # -- keys -----------------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        scopes: tuple[str, ...],
        *,
        sql: bool = False,
        admin: bool = False,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: tuple[float, Window] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret (shown once, never stored)."""
        key, secret = new_key(name, scopes, sql=sql, admin=admin, rpm=rpm, tpm=tpm, budget=budget)

        def insert(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT revoked FROM keys WHERE name = ?", (name,)).fetchone()
            if row is not None:
                raise exists_error(name, row[0] is not None)
            db.execute(
                "INSERT INTO keys (name, hash, hint, scopes, sql, admin, rpm, tpm, budget_usd, budget_window, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    hash_secret(secret),
                    key.hint,
                    json.dumps(list(key.scopes)),
                    int(key.sql),
                    int(key.admin),
                    key.rpm,
                    key.tpm,
                    key.budget_usd,
                    key.budget_window.value,
                    key.created,
                ),
            )

        self.transaction(insert)
        return key, secret

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key (kept for the record; its name is not reused). Servers refuse it within about a second."""

        def update(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT revoked FROM keys WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise unknown_error(name, [str(n) for (n,) in db.execute("SELECT name FROM keys ORDER BY name")])
            if row[0] is None:
                db.execute("UPDATE keys SET revoked = ? WHERE name = ?", (time.time(), name))

        self.transaction(update)
        found = self.get(name)
        assert found is not None
        return found

    def get(self, name: str) -> ApiKey | None:
        rows = self.read(f"SELECT {KEY_COLUMNS} FROM keys WHERE name = ?", (name,))
        return key_from_row(rows[0]) if rows else None

    def by_hash(self, digest: str) -> ApiKey | None:
        """The key whose secret hashes to `digest` (revoked keys included; check `active`)."""
        rows = self.read(f"SELECT {KEY_COLUMNS} FROM keys WHERE hash = ?", (digest,))
        return key_from_row(rows[0]) if rows else None

    def listing(self) -> list[ApiKey]:
        return [key_from_row(r) for r in self.read(f"SELECT {KEY_COLUMNS} FROM keys ORDER BY created, name")]

    def count(self) -> int:
        """Keys ever created, revoked ones included (revoking the last key never opens a server)."""
        ((n,),) = self.read("SELECT COUNT(*) FROM keys")
        return int(n)


def _create_tables(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)


def _while_locked(fn: Callable[[], T], path: Path, timeout_s: float = 10.0) -> T:
    """Run `fn`, retrying with short sleeps while another connection holds the write lock."""
    deadline = time.monotonic() + timeout_s
    delay = 0.0001
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise UserError(f"{path} stayed locked for {timeout_s:g} s. Fix: retry") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


KEY_COLUMNS = "name, hint, scopes, sql, admin, rpm, tpm, budget_usd, budget_window, created, revoked"


def key_from_row(row: Any) -> ApiKey:
    """An `ApiKey` from the columns `KEY_COLUMNS`, in order."""
    name, hint, scopes, sql, admin, rpm, tpm, budget, window, created, revoked = row
    return ApiKey(
        name=str(name),
        hint=str(hint),
        scopes=tuple(json.loads(scopes)),
        sql=bool(sql),
        admin=bool(admin),
        rpm=rpm,
        tpm=tpm,
        budget_usd=budget,
        budget_window=Window(window or "month"),
        created=created,
        revoked=revoked,
    )
