"""Spark at cluster scale: the same AI-function query on a standalone cluster, on `local[2]` and on DuckDB.

`SELECT id, ai_classify(txt, array('fresh', 'rotten')) AS label FROM reviews` over distinct texts, with the
deterministic stand-in model in-process (`function:brickyard.testing.deterministic:answer`, no cache), so the
figure measures the engine path (UDF transport, batching, the batch engine, usage recording), not a model:
  - duckdb: `brickyard.sql.duckdb.connect`, one process;
  - spark local[2]: one JVM, two Python workers;
  - spark cluster: `LocalSparkCluster`, a master and two workers (1 core, 1 GiB each) on 127.0.0.1, executors in
    their own JVMs and Python workers, each opening the workspace (workspace mode).
Each Spark variant first runs the query on a few rows (Python workers started, brickyard imported), then is
timed three times (median reported); every variant starts from an empty workspace. The labels of the three are
compared row by row, and the usage ledger is read back (calls recorded per run).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.common import fresh_workspace, save
from brickyard.sql.duckdb import connect
from brickyard.workspace import Workspace

CONFIG = (
    '[defaults]\nchat = "det"\n'
    '[endpoints.det]\nmodel = "function:brickyard.testing.deterministic:answer"\ncache = false\n'
)
DUCK_QUERY = "SELECT id, ai_classify(txt, ARRAY['fresh', 'rotten']) AS label FROM reviews"
SPARK_QUERY = "SELECT id, ai_classify(txt, array('fresh', 'rotten')) AS label FROM reviews"
PARTITIONS = 4
REPEATS = 3


def _rows(n: int) -> list[tuple[int, str]]:
    return [(i, f"Review {i}: a warm film by Bob Smith, {i % 9} stars, and a long walk in Paris.") for i in range(n)]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed(run: Callable[[], list[tuple[int, str | None]]], n: int) -> dict[str, Any]:
    """The query `REPEATS` times (the machine is shared: the median run is reported, every run is kept)."""
    load = _load()
    runs: list[float] = []
    labels: dict[int, str | None] = {}
    for _ in range(REPEATS):
        started = time.perf_counter()
        got = run()
        runs.append(time.perf_counter() - started)
        labels = dict(got)
        if len(got) != n or len(labels) != n:
            break  # a lost or duplicated row: reported as such below, not timed again
    seconds = statistics.median(runs)
    return {"rows": n, "rows_returned": len(labels), "seconds": seconds, "rows_per_s": n / seconds,
            "runs_s": runs, "load_before": load, "labels": labels}  # fmt: skip


def _duckdb(rows: list[tuple[int, str]]) -> dict[str, Any]:
    ws = fresh_workspace(CONFIG)
    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", rows)
        figures = _timed(lambda: con.sql(DUCK_QUERY).fetchall(), len(rows))
    figures["calls_recorded"] = len(Workspace(ws.path).store.usage(endpoint="det")) / len(figures["runs_s"])
    return figures


def _spark(session: Any, rows: list[tuple[int, str]]) -> dict[str, Any]:
    import brickyard.sql.spark

    ws = fresh_workspace(CONFIG)
    brickyard.sql.spark.register(session, ws)
    session.createDataFrame(_rows(40), "id int, txt string").repartition(PARTITIONS).createOrReplaceTempView("reviews")
    session.sql(SPARK_QUERY).collect()  # warm: Python workers up, brickyard imported, workspace opened
    warm_calls = len(Workspace(ws.path).store.usage(endpoint="det"))
    session.createDataFrame(rows, "id int, txt string").repartition(PARTITIONS).createOrReplaceTempView("reviews")
    session.sql("SELECT count(*) FROM reviews").collect()  # the shuffle is not part of the timed query
    figures = _timed(lambda: [(r["id"], r["label"]) for r in session.sql(SPARK_QUERY).collect()], len(rows))
    figures["calls_recorded"] = (len(Workspace(ws.path).store.usage(endpoint="det")) - warm_calls) / len(
        figures["runs_s"]
    )
    return figures


def run(rows: int = 10_000) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    from brickyard.testing.spark_cluster import LocalSparkCluster

    data = _rows(rows)
    figures: dict[str, Any] = {"rows": rows, "partitions": PARTITIONS, "query": SPARK_QUERY}
    figures["duckdb"] = _duckdb(data)

    os.environ["PYSPARK_PYTHON"] = sys.executable
    local = (
        SparkSession.builder.master("local[2]")
        .appName("brickyard-bench-local")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    local.sparkContext.setLogLevel("ERROR")
    try:
        figures["spark_local"] = _spark(local, data)
    finally:
        local.stop()

    started = time.perf_counter()
    with LocalSparkCluster(workers=2, cores=1, memory="1g", log_dir=tempfile.mkdtemp(prefix="brickyard-bench-")) as c:
        up = time.perf_counter() - started
        session = c.session("brickyard-bench-cluster")
        figures["cluster_start_s"] = {"daemons": up, "session": time.perf_counter() - started - up}
        try:
            figures["spark_cluster"] = _spark(session, data)
        finally:
            session.stop()
    figures["cluster"] = {"workers": 2, "cores_per_worker": 1, "worker_memory": "1g", "executor_memory": "512m"}

    reference = figures["duckdb"]["labels"]
    for name in ("duckdb", "spark_local", "spark_cluster"):
        labels = figures[name].pop("labels")
        figures[name]["rows_lost"] = rows - len(labels)
        figures[name]["same_labels_as_duckdb"] = sum(labels.get(i) == reference[i] for i in reference) / rows
    figures["cluster_vs_local"] = figures["spark_cluster"]["rows_per_s"] / figures["spark_local"]["rows_per_s"]
    figures["cluster_vs_duckdb"] = figures["spark_cluster"]["rows_per_s"] / figures["duckdb"]["rows_per_s"]
    figures["load_after"] = _load()
    save("spark_cluster", figures)
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
