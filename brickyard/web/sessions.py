"""Console sessions: an API key exchanged once for an opaque, server-side session with its own CSRF token.

The cookie holds only a random session id (never the key, nor anything derived from it); the console's file
keeps its SHA-256 (`brickyard.web.store`), so every worker process sees the same sessions. A session remembers
the key's *name*; every request looks the key up again, so a revoked key ends its sessions at once. Sessions
expire after `idle_s` without use; at most `max_sessions` are kept (the least recently used are dropped).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from brickyard.web.store import ConsoleStore

COOKIE = "brickyard_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    """One signed-in browser: who (a key name, or None on an open server) and its CSRF token."""

    id: str
    key_name: str | None
    csrf: str
    created: float

    def csrf_matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), str(given).encode())


class Sessions:
    """The sessions of one workspace's console, shared by its server processes."""

    def __init__(
        self,
        store: ConsoleStore,
        *,
        idle_s: float = 12 * 3600,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._idle = idle_s
        self._max = max_sessions
        self._clock = clock
        self._touch_every = min(60.0, idle_s / 4)  # `seen` is written at most this often per session

    def create(self, key_name: str | None) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), key_name, secrets.token_urlsafe(32), now)
        self._store.drop_idle_sessions(now - self._idle)
        self._store.add_session(session.id, key_name, session.csrf, now, self._max)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id or len(session_id) > 200:
            return None
        found = self._store.session(session_id)
        if found is None:
            return None
        key_name, csrf, created, seen = found
        now = self._clock()
        if now - seen > self._idle:
            self._store.end_session(session_id)
            return None
        if now - seen > self._touch_every:
            self._store.touch_session(session_id, now)
        return Session(session_id, key_name, csrf, created)

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._store.end_session(session_id)

    def __len__(self) -> int:
        return self._store.session_count()
