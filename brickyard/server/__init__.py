"""`brickyard serve`: an OpenAI-compatible gateway with API keys, per-key scopes, limits and budgets.

`create_app(workspace)` gives the FastAPI app; `BackgroundServer` runs it on a thread (demos, tests);
`KeyStore` creates and revokes keys. The web stack (fastapi, uvicorn) is imported on first use only, so
`brickyard keys ...` and the rest of the CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brickyard.server.app import create_app
    from brickyard.server.keys import ApiKey, KeyStore
    from brickyard.server.runner import BackgroundServer

__all__ = ["ApiKey", "BackgroundServer", "KeyStore", "create_app"]

_HOMES = {
    "create_app": "brickyard.server.app",
    "ApiKey": "brickyard.server.keys",
    "KeyStore": "brickyard.server.keys",
    "BackgroundServer": "brickyard.server.runner",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'brickyard.server' has no attribute {name!r}")
