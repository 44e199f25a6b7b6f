"""The web console for people (usage, keys, SQL, evaluations, playground, agents), at `/` of `brickyard serve`.

Same process and same API keys as the JSON APIs: a key is exchanged once for a session cookie
(`brickyard.web.sessions`); scopes and CSRF checks are in `brickyard.web.console`. Pages are rendered on the
server (Jinja2) and made interactive with htmx; charts use Chart.js. Every asset ships in the package.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from brickyard.server.state import ServerState
from brickyard.web import agent_pages, eval_pages, home_pages, playground_pages, sql_pages, usage_pages
from brickyard.web.console import HERE, Console

__all__ = ["Console", "mount"]


def mount(app: FastAPI, state: ServerState) -> Console:
    """Add the console's pages and its static files to the server app; returns the console (on `app.state`)."""
    console = Console(state)
    app.state.console = console
    for module in (home_pages, usage_pages, sql_pages, eval_pages, playground_pages, agent_pages):
        app.include_router(module.router(console))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="console-static")
    # DuckDB's first parameterised query imports pandas (half a second): do it now, off the request path
    threading.Thread(target=_warm_duckdb, name="console-warm", daemon=True).start()
    return console


def _warm_duckdb() -> None:
    with contextlib.suppress(ImportError):  # without the sql extra those pages say what to install
        duckdb = importlib.import_module("duckdb")
        with contextlib.closing(duckdb.connect(":memory:")) as con:
            con.execute("SELECT ?", [1]).fetchall()
