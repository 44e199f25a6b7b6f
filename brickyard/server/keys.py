"""API keys for `brickyard serve`: moved to `brickyard.store.keys`; re-exported here so old imports work."""

from brickyard.store.keys import (
    KEY_PREFIX,
    KEYS_NAME,
    ApiKey,
    Keys,
    KeyStore,
    hash_secret,
    parse_budget,
    parse_scopes,
)

__all__ = ["KEYS_NAME", "KEY_PREFIX", "ApiKey", "KeyStore", "Keys", "hash_secret", "parse_budget", "parse_scopes"]
