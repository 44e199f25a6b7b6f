"""Test helpers that run real servers on 127.0.0.1 (see `brickyard.testing.upstream`).

Nothing heavy is imported here; `FakeUpstream` is loaded lazily on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FakeUpstream"]


def __getattr__(name: str) -> Any:
    if name == "FakeUpstream":
        from brickyard.testing.upstream import FakeUpstream

        return FakeUpstream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
