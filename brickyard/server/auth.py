"""Who is calling: the bearer key checked against `keys.sqlite`, with a short in-process cache.

Verification is cached for `ttl_s` (1 s), so a revoked key is refused by every worker within about a
second and the hot path costs one SHA-256 and a dict lookup. A workspace that has never had a key is
served open, but only to loopback clients (`brickyard serve` also refuses a non-loopback bind then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from brickyard.models.calls import ANONYMOUS, Caller, CallerBudget, CallerRate
from brickyard.server.errors import APIError
from brickyard.server.keys import ApiKey, hash_secret
from brickyard.store.keys import Keys

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_MAX_CACHED = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a key, or nobody on an open (keyless, loopback-only) server."""

    key: ApiKey | None

    @property
    def name(self) -> str | None:
        return self.key.name if self.key else None

    def allows(self, name: str, canonical: str | None = None) -> bool:
        return self.key is None or self.key.allows(name, canonical)

    @property
    def sql(self) -> bool:
        return self.key is None or self.key.sql or self.key.admin

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    def caller(self, tag: str | None = None) -> Caller:
        """The caller of a call made for this principal: its key's name, budget and rate limits (as data)."""
        key = self.key
        if key is None:
            return Caller(tag=tag) if tag else ANONYMOUS
        budgets: tuple[CallerBudget, ...] = ()
        if key.budget_usd is not None:
            budgets = (CallerBudget(f"key:{key.name}", key.budget_usd, key.budget_window.value),)
        rate = CallerRate(f"key:{key.name}", key.rpm, key.tpm) if key.rpm or key.tpm else None
        return Caller(key=key.name, tag=tag, budgets=budgets, rate=rate)


def _unauthorized(message: str, code: str) -> APIError:
    return APIError(401, message, "authentication_error", code, headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    """Turns an `Authorization` header into a `Principal`, or raises a 401 `APIError`."""

    def __init__(self, keys: Keys, *, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._open_until = -1.0
        self._open = False

    def is_open(self) -> bool:
        """True while the workspace has never had a key (checked at most once per `ttl_s`)."""
        now = self._clock()
        if now >= self._open_until:
            self._open = self._keys.count() == 0
            self._open_until = now + self._ttl
        return self._open

    def authenticate(self, authorization: str | None, client_host: str | None) -> Principal:
        if self.is_open():
            if client_host is not None and client_host not in LOOPBACK:
                raise _unauthorized(
                    "this server has no API keys yet and answers loopback clients only. "
                    "Fix: an admin runs `brickyard keys create --name NAME --endpoints ...` and you send the key",
                    "missing_api_key",
                )
            return Principal(None)
        if not authorization:
            raise _unauthorized(
                "no API key. Fix: send `Authorization: Bearer <key>` (the openai SDK: api_key=...)", "missing_api_key"
            )
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise _unauthorized("the Authorization header must be `Bearer <key>`", "invalid_api_key")
        key = self._lookup(hash_secret(secret))
        if key is None:
            raise _unauthorized(
                "the API key is not valid. Fix: check it, or ask an admin for a new one", "invalid_api_key"
            )
        if not key.active:
            raise _unauthorized(
                f"the API key {key.name} was revoked. Fix: ask an admin for a new key", "revoked_api_key"
            )
        return Principal(key)

    def _lookup(self, digest: str) -> ApiKey | None:
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = self._keys.by_hash(digest)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, key)
        return key
