"""Per-key rate limits and budgets, shared by every worker process through `keys.sqlite`.

Each metered key has one row in the `meter` table: two token buckets (requests and tokens; each holds up to
a minute's allowance and refills continuously, so a key may burst its whole per-minute limit and then goes at
the steady rate) and the USD spent in the current budget window. Admitting a request is one short
`BEGIN IMMEDIATE` transaction: refill, check, take. Finishing one adds the real tokens and cost (a second
short transaction, only for keys with a token limit or a budget). Keys with neither limit nor budget never
touch the file.

A budget check counts what every worker has finished (the shared spend) plus what this process has in
flight (its estimates, held until the call finishes), so parallel requests against a small budget overshoot
it by at most the calls in flight at once in the other workers plus the part of this process's calls their
estimates did not cover (an estimate is the prompt plus `max_tokens` at the endpoint's price; without
`max_tokens` only the prompt is counted).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from brickyard.config import Window
from brickyard.models.metering import window_start
from brickyard.server.errors import KeyBudgetExceededError, KeyRateLimitedError
from brickyard.server.keys import ApiKey, KeyStore


@dataclass
class Admission:
    """A request let in: what was taken from the buckets and held against the budget."""

    key: ApiKey
    tokens: int
    usd: float


def window_end(window: Window, now: float) -> float:
    """When the current day or month (UTC) ends."""
    start = datetime.fromtimestamp(window_start(window, now), tz=UTC)
    if window is Window.day:
        return start.timestamp() + 86400.0
    month = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return month.timestamp()


class Meter:
    """Admits requests against a key's rpm, tpm and budget; records what they used when they finish.

    `ledger_spent(key, since)` gives the USD the ledger holds for a key since a time; it seeds a key's spend
    the first time the meter sees the key (e.g. after `keys.sqlite` was recreated).
    """

    def __init__(self, keys: KeyStore, ledger_spent: Callable[[str, float], float]) -> None:
        self._keys = keys
        self._ledger_spent = ledger_spent
        self._lock = threading.Lock()
        self._held: dict[str, float] = {}  # USD held by this process's calls in flight, per key
        self._seeds: dict[str, float] = {}

    def held_usd(self, key: str) -> float:
        with self._lock:
            return self._held.get(key, 0.0)

    def admit(self, key: ApiKey, tokens: int, usd: float) -> Admission | None:
        """Let a request in or raise `KeyRateLimitedError` / `KeyBudgetExceededError` (nothing is taken then)."""
        if not key.metered:
            return None
        now = time.time()
        budget_start = window_start(key.budget_window, now)
        seed = self._seed(key, budget_start) if key.budget_usd is not None else 0.0
        with self._lock:
            held = self._held.get(key.name, 0.0)

            def take(db: sqlite3.Connection) -> None:
                row = db.execute(
                    "SELECT requests, tokens, refilled, window_start, spent_usd FROM meter WHERE key = ?", (key.name,)
                ).fetchone()
                if row is None:
                    row = (float(key.rpm or 0), float(key.tpm or 0), now, budget_start, seed)
                requests, bucket, refilled, started, spent = row
                elapsed = max(0.0, now - refilled)
                if key.rpm:
                    requests = min(float(key.rpm), requests + elapsed * key.rpm / 60.0)
                    if requests < 1.0:
                        raise KeyRateLimitedError(key.name, "requests", key.rpm, (1.0 - requests) * 60.0 / key.rpm)
                if key.tpm:
                    bucket = min(float(key.tpm), bucket + elapsed * key.tpm / 60.0)
                    need = min(tokens, key.tpm)
                    if bucket < need:
                        raise KeyRateLimitedError(key.name, "tokens", key.tpm, (need - bucket) * 60.0 / key.tpm)
                if started != budget_start:  # a new day or month
                    started, spent = budget_start, 0.0
                if key.budget_usd is not None and (spent >= key.budget_usd or spent + held + usd > key.budget_usd):
                    raise KeyBudgetExceededError(
                        key.name,
                        key.budget_usd,
                        spent + held,
                        key.budget_window.value,
                        window_end(key.budget_window, now) - now,
                    )
                db.execute(
                    "INSERT OR REPLACE INTO meter (key, requests, tokens, refilled, window_start, spent_usd)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        key.name,
                        requests - 1.0 if key.rpm else 0.0,
                        bucket - tokens if key.tpm else 0.0,
                        now,
                        started,
                        spent,
                    ),
                )

            self._keys.transaction(take)
            if usd:
                self._held[key.name] = held + usd
        return Admission(key, tokens, usd)

    def finish(self, admission: Admission | None, *, tokens: int, usd: float) -> None:
        """Release what the request held; charge the tokens it really used and what it really cost."""
        if admission is None:
            return
        key = admission.key
        if admission.usd:
            with self._lock:
                left = self._held.get(key.name, 0.0) - admission.usd
                if left > 1e-12:
                    self._held[key.name] = left
                else:
                    self._held.pop(key.name, None)
        extra_tokens = (tokens - admission.tokens) if key.tpm else 0
        charge = usd if key.budget_usd is not None else 0.0
        if not extra_tokens and not charge:
            return
        self._keys.transaction(
            lambda db: db.execute(
                "UPDATE meter SET tokens = tokens - ?, spent_usd = spent_usd + ? WHERE key = ?",
                (float(extra_tokens), charge, key.name),
            )
        )

    def _seed(self, key: ApiKey, since: float) -> float:
        """The ledger's spend for a key the meter has no row for yet (looked up once per key and process)."""
        if key.name not in self._seeds:
            present = self._keys.read("SELECT 1 FROM meter WHERE key = ?", (key.name,))
            self._seeds[key.name] = 0.0 if present else self._ledger_spent(key.name, since)
        return self._seeds[key.name]
