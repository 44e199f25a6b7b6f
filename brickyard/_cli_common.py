"""What every `brickyard` command module shares: the consoles, the --workspace option, running a coroutine."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from brickyard.workspace import Workspace

T = TypeVar("T")

# Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns; keep them readable instead.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="workspace folder (default $BRICKYARD_HOME or ./.brickyard)")
]


async def run_and_close(ws: Workspace, coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro`, then close the workspace's models (local servers, HTTP clients) whatever happens."""
    try:
        return await coro
    finally:
        await ws.aclose()
