"""Who is calling: the API key name a call is made for, so usage and payloads are charged to it.

A context variable, set for the span of one server request (`with caller_scope("team-a"): ...`); tasks
started inside inherit it, so every endpoint that serves the call (fallbacks included) sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_caller: ContextVar[str | None] = ContextVar("brickyard_caller", default=None)


def current_caller() -> str | None:
    """The API key name of the call in progress, or None outside a keyed request."""
    return _caller.get()


@contextmanager
def caller_scope(name: str | None) -> Iterator[None]:
    """Charge the calls made inside this block to the key `name`."""
    token = _caller.set(name)
    try:
        yield
    finally:
        _caller.reset(token)
