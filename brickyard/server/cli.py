"""`brickyard serve` and `brickyard keys create|list|revoke` (wired into `brickyard.cli`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from brickyard._cli_common import WorkspaceOpt, err, out
from brickyard._errors import UserError
from brickyard.agents.runner import Agents
from brickyard.models.metering import window_start
from brickyard.server.keys import parse_budget, parse_scopes
from brickyard.store.keys import Keys
from brickyard.workspace import Workspace

keys_app = typer.Typer(no_args_is_help=True, help="API keys for `brickyard serve`: create, list, revoke.")


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    workers: Annotated[int, typer.Option(help="worker processes (limits, budgets and usage stay shared)")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request (off: faster)")] = False,
    graceful_timeout: Annotated[float, typer.Option(help="seconds in-flight requests get at shutdown")] = 30.0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Serve endpoints and agents over an OpenAI-compatible HTTP API (keys, limits, budgets, usage)."""
    from brickyard.server.runner import check_exposure
    from brickyard.server.runner import serve as run

    ws = Workspace(workspace)
    _ = ws.settings  # a bad brickyard.toml fails here, with the file, key and fix
    path = ws.path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    if check_exposure(path, host):
        err.print(
            "[yellow]warning:[/] no API keys in this workspace: serving without authentication, to loopback "
            "clients only. Create one with: brickyard keys create --name NAME --endpoints '*'",
            highlight=False,
        )
    err.print(f"brickyard serving {path} on http://{host}:{port} ({workers} worker{'s' * (workers > 1)})")
    run(path, host=host, port=port, workers=workers, access_log=access_log, graceful_timeout_s=graceful_timeout)


def _keys(workspace: Path | None) -> Keys:
    """The workspace's key store (`keys.sqlite`, or PostgreSQL with `[store] url`)."""
    return Workspace(workspace).keys


def _check_scopes(workspace: Path | None, scopes: tuple[str, ...]) -> None:
    """Every scope names an endpoint, an alias or an existing agent (or is `*` / `agent:*`)."""
    ws = Workspace(workspace)
    registry = ws.registry
    known = {*registry.endpoint_names(), *registry.settings.aliases}
    agents = None
    for scope in scopes:
        if scope in ("*", "agent:*"):
            continue
        if scope.startswith("agent:"):
            agents = agents or Agents(ws)
            agents.store.get(scope.removeprefix("agent:"))  # raises with the list of agents
        elif scope not in known:
            raise UserError(
                f"`{scope}` is not an endpoint or alias of this workspace (known: {', '.join(sorted(known))}). "
                "Fix: correct --endpoints, or define it in brickyard.toml first"
            )
    if agents is not None:
        agents.close()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="the key's name (shows in usage)")],
    endpoints: Annotated[
        str, typer.Option("--endpoints", help="comma-separated endpoints, aliases and agent:NAME; '*' for all")
    ],
    rpm: Annotated[int | None, typer.Option(help="requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute")] = None,
    budget_usd: Annotated[
        str | None, typer.Option("--budget-usd", help="USD per window, e.g. 50/month or 5/day")
    ] = None,
    sql: Annotated[bool, typer.Option("--sql", help="may run POST /api/sql (AI functions on every endpoint)")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="everything, and every key's usage")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Create a key. The secret is printed once, alone on stdout; only its hash is stored."""
    scopes = parse_scopes(endpoints)
    _check_scopes(workspace, scopes)
    budget = parse_budget(budget_usd) if budget_usd else None
    keys = _keys(workspace)
    try:
        key, secret = keys.create(name, scopes, sql=sql, admin=admin, rpm=rpm, tpm=tpm, budget=budget)
    finally:
        keys.close()
    print(secret)
    err.print(
        f"created key {escape(key.name)} for {escape(', '.join(key.scopes))} "
        f"(limits: {escape(key.describe_limits())}). The secret above is shown once; store it now.",
        highlight=False,
    )


@keys_app.command("list")
def keys_list(workspace: WorkspaceOpt = None) -> None:
    """Keys with their scopes, limits, spend this window and state (never the secrets)."""
    ws = Workspace(workspace)
    keys, now = ws.keys, time.time()
    try:  # spend this window, from the usage ledger (every call made with the key is there)
        rows = [(k, ws.store.spent_usd(since=window_start(k.budget_window, now), key=k.name)) for k in keys.listing()]
    finally:
        keys.close()
        ws.store.close()
    table = Table("name", "key", "endpoints", "sql", "limits", "spent $", "created", "state")
    for key, used in rows:
        table.add_row(
            escape(key.name),
            escape(key.hint),
            escape(", ".join(key.scopes)) + (" (admin)" if key.admin else ""),
            "yes" if key.sql or key.admin else "no",
            escape(key.describe_limits()),
            f"{used:.4f}",
            datetime.fromtimestamp(key.created, tz=UTC).strftime("%Y-%m-%d %H:%M"),
            "[green]active[/]" if key.active else "[red]revoked[/]",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: str, workspace: WorkspaceOpt = None) -> None:
    """Revoke a key: running servers refuse it within about a second."""
    keys = _keys(workspace)
    try:
        keys.revoke(name)
    finally:
        keys.close()
    out.print(f"revoked {name}")
