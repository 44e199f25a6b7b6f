"""Benchmark 4: `SELECT ai_classify(...)` over real review snippets, in DuckDB and on Spark `local[2]`.

Side by side on the same rows and the same local model (SmolLM2-135M, greedy decoding):
  - sql: `SELECT ai_classify(txt, ARRAY['fresh', 'rotten']) FROM reviews` through `brickyard.sql.duckdb`;
  - engine: the batch engine called directly (`brickyard.functions.classify`), the SQL layer's baseline;
  - loop: a plain Python loop sending the same requests to the same model one row at a time;
  - spark: the same query on Spark `local[2]` (two Python workers, one llama.cpp thread each).
Every variant starts from an empty workspace, so nothing is served from a cache.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from bench.common import fresh_workspace, save
from brickyard.datasets.rotten_tomatoes import LABELS, rotten_tomatoes
from brickyard.functions.classify import classify, classify_requests, parse_label
from brickyard.sql.duckdb import connect

QUERY = "SELECT id, ai_classify(txt, ARRAY['fresh', 'rotten']) AS label FROM reviews ORDER BY id"


def _accuracy(predicted: list[str | None], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def run(rows: int = 2000, loop_rows: int = 400, spark_rows: int = 400) -> dict[str, Any]:
    data = rotten_tomatoes(rows, seed=1, install=True)
    texts, gold = [d.text for d in data], [d.label for d in data]
    figures: dict[str, Any] = {"rows": rows, "model": "local:smollm2-135m"}

    ws = fresh_workspace("parallel = 4\n")
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", list(enumerate(texts)))
        started = time.perf_counter()
        sql_labels = [label for _, label in con.sql(QUERY).fetchall()]
        elapsed = time.perf_counter() - started
    figures["sql"] = {"rows_per_s": rows / elapsed, "accuracy": _accuracy(sql_labels, gold), "seconds": elapsed}

    ws = fresh_workspace("parallel = 4\n")
    model = ws.model("smollm2")

    async def engine() -> list[Any]:
        try:
            return (await classify(texts, list(LABELS), model, progress=False)).values
        finally:
            await ws.aclose()

    started = time.perf_counter()
    engine_labels = asyncio.run(engine())
    elapsed = time.perf_counter() - started
    figures["engine"] = {"rows_per_s": rows / elapsed, "accuracy": _accuracy(engine_labels, gold), "seconds": elapsed}

    ws = fresh_workspace("parallel = 4\n")
    model = ws.model("smollm2")
    requests = classify_requests(texts[:loop_rows], list(LABELS), model=model)

    async def loop() -> list[str | None]:
        out: list[str | None] = []
        try:
            for request in requests:
                assert request is not None
                out.append(parse_label(await model.complete(request), list(LABELS)))
        finally:
            await ws.aclose()
        return out

    started = time.perf_counter()
    loop_labels = asyncio.run(loop())
    elapsed = time.perf_counter() - started
    figures["loop"] = {
        "rows": loop_rows,
        "rows_per_s": loop_rows / elapsed,
        "accuracy": _accuracy(loop_labels, gold[:loop_rows]),
        "seconds": elapsed,
    }
    figures["spark"] = _spark(texts[:spark_rows], gold[:spark_rows], sql_labels[:spark_rows])
    figures["sql_vs_engine"] = figures["sql"]["rows_per_s"] / figures["engine"]["rows_per_s"]
    figures["sql_vs_loop"] = figures["sql"]["rows_per_s"] / figures["loop"]["rows_per_s"]
    figures["targets"] = {"sql_vs_engine": ">= 0.95", "sql_vs_loop": ">= 2.0", "accuracy": ">= LOTUS sem_filter 0.62"}
    save("sql_classify", figures)
    return figures


def _spark(texts: list[str], gold: list[str], duck_labels: list[str | None]) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    import brickyard.sql.spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    ws = fresh_workspace("parallel = 4\nthreads = 1\n")  # two workers share two cores
    brickyard.sql.spark.register(spark, ws)
    spark.createDataFrame(list(enumerate(texts)), "id int, txt string").repartition(2).createOrReplaceTempView(
        "reviews"
    )
    started = time.perf_counter()
    labels = [row["label"] for row in spark.sql(QUERY.replace("ARRAY[", "array(").replace("'])", "'))")).collect()]
    elapsed = time.perf_counter() - started
    spark.stop()
    n = len(texts)
    return {
        "rows": n,
        "rows_per_s": n / elapsed,
        "accuracy": _accuracy(labels, gold),
        "seconds": elapsed,
        "agreement_with_duckdb": sum(a == b for a, b in zip(labels, duck_labels, strict=True)) / n,
    }
