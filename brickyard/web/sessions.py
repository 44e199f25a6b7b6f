"""Console sessions: an API key exchanged once for an opaque, server-side session with its own CSRF token.

The cookie holds only a random session id (never the key, nor anything derived from it). The session
remembers the key's *name*; every request looks the key up again, so a revoked key ends its sessions at
once. Sessions expire after `idle_s` without use and at most `max_sessions` are kept (oldest dropped first).
Sessions live in the server process (`Console`), so a server with several workers signs people in per worker.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "brickyard_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass
class Session:
    """One signed-in browser: who (a key name, or None on an open server) and its CSRF token."""

    id: str
    key_name: str | None
    csrf: str
    created: float
    seen: float = field(default=0.0)

    def csrf_matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), str(given).encode())


class Sessions:
    """The sessions of one server process (thread-safe)."""

    def __init__(
        self, *, idle_s: float = 12 * 3600, max_sessions: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._idle = idle_s
        self._max = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, key_name: str | None) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), key_name, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (its idle timer restarted), or None."""
        if not session_id:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self._idle:
                del self._sessions[session_id]
                return None
            session.seen = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def __len__(self) -> int:
        return len(self._sessions)
