"""The serving part of `brickyard demo`: the server in the background, one endpoint and one agent called with
the official `openai` SDK, the usage table read back over HTTP, then the server stopped."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brickyard.agents.runner import Agents
from brickyard.functions import mechanisms
from brickyard.models.catalog import CATALOG
from brickyard.server.keys import KEYS_NAME, KeyStore
from brickyard.server.runner import BackgroundServer
from brickyard.workspace import Workspace


def _pick_agent(workspace: Workspace) -> str | None:
    agents = Agents(workspace)
    try:
        listing = agents.store.listing()
    finally:
        agents.close()
    names = [str(row[0]) for row in listing if row[1] == "knowledge"] or [str(row[0]) for row in listing]
    return names[0] if names else None


RAW_ANSWER_TOKENS = 16
"""The serving step's chat answer is cut here: it shows the API works, not what the model can write."""


def raw_answer_caption(model: str | None) -> str | None:
    """What a newcomer should know about a bundled model's own chat answer (None for other models)."""
    bundled = (model or "").removeprefix("local:")
    if not (model or "").startswith("local:") or bundled not in CATALOG:
        return None
    return (
        f"({bundled}'s own words, cut at {RAW_ANSWER_TOKENS} tokens: a bundled model this small rambles when asked "
        f"to chat. The AI functions on it use {mechanisms(model)}; free text (ai_summarize, ai_gen) is only as "
        "good as the model. For chat, point [defaults] chat at a capable endpoint.)"
    )


def serve_demo(
    workspace: Workspace | str | Path,
    console: Console,
    *,
    endpoint: str | None = None,
    agent: str | None = None,
    prompt: str = "Name one colour of the sky, in one word.",
    agent_input: str = "What is this about?",
) -> None:
    """Start the server on a free loopback port, create a key, call `endpoint` (default: `[defaults] chat`) and
    `agent:AGENT` (default: the first knowledge agent) with the `openai` SDK, print the usage by key, stop.

    The demo key is revoked at the end (it stays listed by `brickyard keys list`).
    """
    import openai

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    endpoint = endpoint or ws.settings.defaults.chat
    agent = agent or _pick_agent(ws)
    scopes = (endpoint, f"agent:{agent}") if agent else (endpoint,)
    keys = KeyStore(ws.path / KEYS_NAME)
    name = f"demo-{int(time.time())}"
    try:
        _, secret = keys.create(name, scopes)
        started = time.time()
        console.print(f"[bold]Serving[/]: `brickyard serve` in the background, key {name} for {', '.join(scopes)}")
        with BackgroundServer(Workspace(ws.path)) as server:
            console.print(f"  listening on {server.url} (OpenAPI document at {server.url}/docs)")
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=secret, max_retries=0, timeout=300)
            reply = client.chat.completions.create(
                model=endpoint, messages=[{"role": "user", "content": prompt}], max_tokens=RAW_ANSWER_TOKENS
            )
            console.print(
                f"  {escape(endpoint)} ← {escape(prompt)!r}\n  → {escape(reply.choices[0].message.content or '')!r}"
            )
            caption = raw_answer_caption(ws.registry.config_for(endpoint).model)
            if caption:
                console.print(f"    [dim]{escape(caption)}[/]")
            if agent:
                answer = client.chat.completions.create(
                    model=f"agent:{agent}", messages=[{"role": "user", "content": agent_input}]
                )
                message = answer.choices[0].message
                citations = (message.model_extra or {}).get("citations") or []
                console.print(
                    f"  agent:{escape(agent)} ← {escape(agent_input)!r}\n  → {escape(message.content or '')!r}"
                    + (f" ({len(citations)} citations)" if citations else "")
                )
            usage = httpx.get(
                server.url + "/api/usage",
                params={"group_by": "key,endpoint", "since": str(started)},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            ).json()
        table = Table("key", "endpoint", "calls", "errors", "in tok", "out tok", "cost $", title="GET /api/usage")
        for row in usage["summary"]:
            table.add_row(
                row["key"],
                row["endpoint"],
                str(row["calls"]),
                str(row["errors"]),
                f"{row['input_tokens']:,}",
                f"{row['output_tokens']:,}",
                f"{row['cost_usd']:.5f}",
            )
        console.print(table)
        console.print("  server stopped (in-flight requests finished, usage flushed)")
    finally:
        if keys.get(name) is not None:
            keys.revoke(name)
        keys.close()
