"""API keys in the PostgreSQL database of `[store] url`, shared by every `brickyard serve` host (`Keys`)."""

from __future__ import annotations

import json
import time
from typing import Any

from brickyard.config import Window
from brickyard.store import _pg
from brickyard.store.keys import (
    KEY_COLUMNS,
    ApiKey,
    exists_error,
    hash_secret,
    key_from_row,
    new_key,
    unknown_error,
)


class PostgresKeyStore:
    """The `brickyard_keys` table. Thread-safe (a small connection pool)."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        self.url = url
        self._pool = _pg.open_pool(url, max_size=pool_size)

    def __repr__(self) -> str:
        return f"PostgresKeyStore({_pg.redact(self.url)!r})"

    def close(self) -> None:
        self._pool.close()

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
        with self._pool.connection() as conn:
            inserted = conn.execute(
                "INSERT INTO brickyard_keys (name, hash, hint, scopes, sql, admin, rpm, tpm, budget_usd,"
                " budget_window, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (name) DO NOTHING RETURNING name",
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
            ).fetchone()
        if inserted is None:
            existing = self.get(name)
            raise exists_error(name, existing is not None and existing.revoked is not None)
        return key, secret

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key (kept for the record; its name is not reused). Servers refuse it within about a second."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE brickyard_keys SET revoked = %s WHERE name = %s AND revoked IS NULL", (time.time(), name)
            )
        found = self.get(name)
        if found is None:
            raise unknown_error(name, [k.name for k in sorted(self.listing(), key=lambda k: k.name)])
        return found

    def get(self, name: str) -> ApiKey | None:
        rows = self._read(f"SELECT {KEY_COLUMNS} FROM brickyard_keys WHERE name = %s", (name,))
        return key_from_row(rows[0]) if rows else None

    def by_hash(self, digest: str) -> ApiKey | None:
        """The key whose secret hashes to `digest` (revoked keys included; check `active`)."""
        rows = self._read(f"SELECT {KEY_COLUMNS} FROM brickyard_keys WHERE hash = %s", (digest,))
        return key_from_row(rows[0]) if rows else None

    def listing(self) -> list[ApiKey]:
        return [key_from_row(r) for r in self._read(f"SELECT {KEY_COLUMNS} FROM brickyard_keys ORDER BY created, name")]

    def count(self) -> int:
        """Keys ever created, revoked ones included (revoking the last key never opens a server)."""
        ((n,),) = self._read("SELECT COUNT(*) FROM brickyard_keys")
        return int(n)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._pool.connection() as conn:
            return list(conn.execute(sql, args).fetchall())
