"""PostgreSQL plumbing shared by the store and the key store: the guarded import, the pool, the schema."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from brickyard._errors import MissingExtraError, UserError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS brickyard_usage (
    id BIGSERIAL PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    tag TEXT,
    requested_endpoint TEXT,
    key TEXT,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    latency_s DOUBLE PRECISION NOT NULL,
    cache_hit INTEGER NOT NULL,
    error TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS brickyard_usage_endpoint_ts ON brickyard_usage (endpoint, ts);
CREATE INDEX IF NOT EXISTS brickyard_usage_tag_ts ON brickyard_usage (tag, ts);
CREATE INDEX IF NOT EXISTS brickyard_usage_key_ts ON brickyard_usage (key, ts);
CREATE INDEX IF NOT EXISTS brickyard_usage_ts ON brickyard_usage (ts);
CREATE TABLE IF NOT EXISTS brickyard_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS brickyard_budget_spend (
    scope TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    spent_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, window_start)
);
CREATE TABLE IF NOT EXISTS brickyard_budget_holds (
    id TEXT NOT NULL,
    scope TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    amount_usd DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (id, scope, window_start)
);
CREATE INDEX IF NOT EXISTS brickyard_budget_holds_window ON brickyard_budget_holds (scope, window_start, expires);
CREATE TABLE IF NOT EXISTS brickyard_rate_state (
    scope TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS brickyard_keys (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT NOT NULL,
    sql INTEGER NOT NULL DEFAULT 0,
    admin INTEGER NOT NULL DEFAULT 0,
    rpm INTEGER,
    tpm INTEGER,
    budget_usd DOUBLE PRECISION,
    budget_window TEXT,
    created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION
);
CREATE OR REPLACE FUNCTION brickyard_take_rate(
    p_scope TEXT, p_now DOUBLE PRECISION, p_interval DOUBLE PRECISION, p_tolerance DOUBLE PRECISION,
    p_amount DOUBLE PRECISION, p_book BOOLEAN
) RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
DECLARE
    t DOUBLE PRECISION;
    w DOUBLE PRECISION;
BEGIN
    INSERT INTO brickyard_rate_state (scope, tat) VALUES (p_scope, p_now) ON CONFLICT (scope) DO NOTHING;
    SELECT tat INTO t FROM brickyard_rate_state WHERE scope = p_scope FOR UPDATE;
    t := GREATEST(t, p_now);
    w := GREATEST(0, t - p_now - p_tolerance);
    IF w = 0 OR p_book THEN
        UPDATE brickyard_rate_state SET tat = t + p_amount * p_interval WHERE scope = p_scope;
    END IF;
    RETURN w;
END $$;
CREATE OR REPLACE FUNCTION brickyard_reserve(
    p_id TEXT, p_scopes TEXT[], p_starts DOUBLE PRECISION[], p_columns TEXT[], p_values TEXT[], p_hold_window INT[],
    p_limits DOUBLE PRECISION[], p_amount DOUBLE PRECISION, p_now DOUBLE PRECISION, p_expires DOUBLE PRECISION,
    p_eps DOUBLE PRECISION, OUT refused INT, OUT spent DOUBLE PRECISION, OUT held DOUBLE PRECISION
) LANGUAGE plpgsql AS $$
DECLARE
    spents DOUBLE PRECISION[] := '{}';
    helds DOUBLE PRECISION[] := '{}';
    s DOUBLE PRECISION;
    h DOUBLE PRECISION;
    i INT;
BEGIN
    -- lock each window's spend row in the given (sorted) order, seeding a new one from the ledger
    FOR i IN 1..COALESCE(array_length(p_scopes, 1), 0) LOOP
        SELECT b.spent_usd INTO s FROM brickyard_budget_spend b
            WHERE b.scope = p_scopes[i] AND b.window_start = p_starts[i] FOR UPDATE;
        IF NOT FOUND THEN
            s := 0;
            IF p_columns[i] = 'endpoint' THEN
                SELECT COALESCE(SUM(cost_usd), 0) INTO s FROM brickyard_usage
                    WHERE endpoint = p_values[i] AND ts >= p_starts[i];
            ELSIF p_columns[i] = 'tag' THEN
                SELECT COALESCE(SUM(cost_usd), 0) INTO s FROM brickyard_usage
                    WHERE tag = p_values[i] AND ts >= p_starts[i];
            ELSIF p_columns[i] = 'key' THEN
                SELECT COALESCE(SUM(cost_usd), 0) INTO s FROM brickyard_usage
                    WHERE key = p_values[i] AND ts >= p_starts[i];
            END IF;
            INSERT INTO brickyard_budget_spend (scope, window_start, spent_usd) VALUES (p_scopes[i], p_starts[i], s)
                ON CONFLICT DO NOTHING;
            SELECT b.spent_usd INTO s FROM brickyard_budget_spend b
                WHERE b.scope = p_scopes[i] AND b.window_start = p_starts[i] FOR UPDATE;
        END IF;
        -- a new snapshot after the lock: every hold committed before it counts
        SELECT COALESCE(SUM(amount_usd), 0) INTO h FROM brickyard_budget_holds
            WHERE scope = p_scopes[i] AND window_start = p_starts[i] AND expires > p_now;
        spents := spents || s;
        helds := helds || h;
    END LOOP;
    -- the refusal rule of brickyard.store._budget.refuses, per hold in the caller's order
    FOR i IN 1..COALESCE(array_length(p_limits, 1), 0) LOOP
        s := spents[p_hold_window[i]];
        h := helds[p_hold_window[i]];
        IF s >= p_limits[i] - p_eps OR (p_amount > 0 AND s + h + p_amount > p_limits[i] + p_eps) THEN
            refused := i;
            spent := s;
            held := h;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO brickyard_budget_holds (id, scope, window_start, amount_usd, expires)
        SELECT p_id, u.scope, u.start, p_amount, p_expires FROM unnest(p_scopes, p_starts) AS u(scope, start);
    refused := 0;
    spent := 0;
    held := 0;
END $$;
"""
"""Every table carries a `brickyard_` prefix, so the store can share a database with other applications."""

_SCHEMA_LOCK = 0x62726B79  # "brky": one process at a time creates the schema
_RETRY_FOR_S = 30.0


def psycopg_modules() -> tuple[Any, Any]:
    """(psycopg, psycopg_pool), or a `MissingExtraError` naming the extra to install."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise MissingExtraError("psycopg (the PostgreSQL driver)", "postgres") from None
    return psycopg, psycopg_pool


def redact(url: str) -> str:
    """The url without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def open_pool(url: str, *, max_size: int, timeout_s: float = 10.0) -> Any:
    """A connection pool (autocommit connections) with the brickyard schema in place."""
    psycopg, psycopg_pool = psycopg_modules()
    pool = psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=max(1, max_size),
        kwargs={"autocommit": True},
        timeout=timeout_s,
        open=False,
        name="brickyard",
    )
    try:
        pool.open(wait=True, timeout=timeout_s)
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(SCHEMA)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        pool.close()
        raise UserError(
            f"cannot use the PostgreSQL store {redact(url)} ({str(exc).strip() or type(exc).__name__}). Fix: start"
            " the server, check [store] url in brickyard.toml (user, host, port, database) and the password"
            " (PGPASSWORD or ~/.pgpass)"
        ) from None
    return pool


def retrying(fn: Callable[[], T]) -> T:
    """Run a transaction `fn`, retrying deadlocks and serialization failures (another host won the race)."""
    psycopg, _ = psycopg_modules()
    deadline = time.monotonic() + _RETRY_FOR_S
    delay = 0.002
    while True:
        try:
            return fn()
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
