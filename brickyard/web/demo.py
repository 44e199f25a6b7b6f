"""The end of `brickyard demo`: where the web console is, and with `--serve` the server left running for it."""

from __future__ import annotations

import time

from rich.console import Console

from brickyard.workspace import Workspace

PORT = 8080


def console_hint(workspace: Workspace, console: Console, *, serve: bool, port: int = PORT) -> None:
    """Print the console's address; with `serve`, make an admin key (shown once) and serve until Ctrl-C."""
    url = f"http://127.0.0.1:{port}/"
    if not serve:
        console.print(
            f"[bold]Web console[/]: `brickyard demo --serve` (or `brickyard serve`) and open {url}", highlight=False
        )
        return
    from brickyard.server.runner import serve as run

    path = workspace.path.resolve()
    name = f"console-{int(time.time())}"
    _, secret = workspace.keys.create(name, ("*", "agent:*"), sql=True, admin=True)
    console.print(
        f"[bold]Web console[/] at {url}: sign in with the admin key {name} (shown once; revoke it with "
        f"`brickyard keys revoke {name}`):\n  {secret}\nServing until Ctrl-C.",
        highlight=False,
    )
    run(path, host="127.0.0.1", port=port)
