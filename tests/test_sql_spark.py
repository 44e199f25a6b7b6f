"""The same AI functions on Spark (`local[2]`): identical results to DuckDB with the same deterministic model."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DETERMINISTIC_CONFIG

from brickyard import Workspace
from brickyard.sql.duckdb import connect
from brickyard.testing.upstream import FakeUpstream

pytestmark = pytest.mark.spark

CONFIG = DETERMINISTIC_CONFIG

ROWS = [
    (1, "A great Film by Bob Smith, warm and funny."),
    (2, "Awful movie. Call 555-0100 to complain."),
    (3, None),
    (4, "A great Film by Bob Smith, warm and funny."),
    (5, "Mediocre but Paris looks lovely."),
    (6, "Une histoire touchante, Marie est parfaite."),
]

# Each function in both dialects; results are normalised to Python values before comparing.
QUERIES: dict[str, tuple[str, str]] = {
    "ai_classify": (
        "ai_classify(txt, ARRAY['fresh', 'rotten'])",
        "ai_classify(txt, array('fresh', 'rotten'))",
    ),
    "ai_classify_descriptions": (
        """ai_classify(txt, '{"billing": "invoices", "bug": "broken"}')""",
        """ai_classify(txt, '{"billing": "invoices", "bug": "broken"}')""",
    ),
    "ai_extract": ("ai_extract(txt, ARRAY['person', 'city'])", "ai_extract(txt, array('person', 'city'))"),
    "ai_summarize": ("ai_summarize(txt, 3)", "ai_summarize(txt, 3)"),
    "ai_translate": ("ai_translate(txt, 'es')", "ai_translate(txt, 'es')"),
    "ai_fix_grammar": ("ai_fix_grammar(txt)", "ai_fix_grammar(txt)"),
    "ai_gen": ("ai_gen(txt)", "ai_gen(txt)"),
    "ai_mask": ("ai_mask(txt, ARRAY['person'])", "ai_mask(txt, array('person'))"),
    "ai_analyze_sentiment": ("ai_analyze_sentiment(txt)", "ai_analyze_sentiment(txt)"),
    "ai_similarity": ("ai_similarity(txt, 'a warm film')", "ai_similarity(txt, 'a warm film')"),
    "ai_filter": ("ai_filter('is positive', txt)", "ai_filter('is positive', txt)"),
    "ai_embed": ("ai_embed(txt)", "ai_embed(txt)"),
    "ai_query": ("ai_query('det', txt)", "ai_query('det', txt)"),
    "ai_query_format": (
        "ai_query('det', txt, responseFormat => 'STRUCT<name: STRING, n: INT>')",
        "ai_query('det', txt, responseFormat => 'STRUCT<name: STRING, n: INT>')",
    ),
    "ai_classify_endpoint": (
        "ai_classify(txt, ARRAY['fresh', 'rotten'], endpoint => 'det')",
        "ai_classify(txt, array('fresh', 'rotten'), endpoint => 'det')",
    ),
    "ai_match": (
        "ai_match(txt, ARRAY['is positive', 'is negative'], endpoint => 'det')",
        "ai_match(txt, array('is positive', 'is negative'), endpoint => 'det')",
    ),
    "ai_query_fail_on_error": (
        "ai_query('nope', txt, failOnError => false)",
        "ai_query_safe('nope', txt)",
    ),
}


def normalise(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "ai_extract":
        return json.loads(value) if isinstance(value, str) else dict(value)
    if name in ("ai_similarity",):
        return round(float(value), 5)
    if name == "ai_embed":
        return [round(float(v), 5) for v in value]
    if name == "ai_query_fail_on_error":
        data = value.asDict() if hasattr(value, "asDict") else dict(value)
        data["errorMessage"] = None if data["errorMessage"] is None else data["errorMessage"].split(".")[0]
        return data
    if name == "ai_query_format":
        return json.loads(value)
    return value


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("spark") / "ws")
    ws.config_path.write_text(CONFIG)
    return Workspace(ws.path)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("brickyard-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def duck_results(workspace: Workspace) -> dict[str, list[Any]]:
    with connect(workspace, database=":memory:") as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", ROWS)
        return {
            name: [normalise(name, r[0]) for r in con.sql(f"SELECT {duck} FROM reviews ORDER BY id").fetchall()]
            for name, (duck, _) in QUERIES.items()
        }


@pytest.fixture(scope="module")
def spark_results(spark: Any, workspace: Workspace) -> dict[str, list[Any]]:
    import brickyard.sql.spark

    names = brickyard.sql.spark.register(spark, workspace)
    assert {"ai_classify", "ai_query", "ai_query_safe", "ai_agg"} <= set(names)
    spark.createDataFrame(ROWS, "id int, txt string").createOrReplaceTempView("reviews")
    selects = ", ".join(f"{expr} AS {name}" for name, (_, expr) in QUERIES.items())
    rows = spark.sql(f"SELECT {selects} FROM reviews ORDER BY id").collect()
    return {name: [normalise(name, row[name]) for row in rows] for name in QUERIES}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_spark_and_duckdb_agree(
    name: str, duck_results: dict[str, list[Any]], spark_results: dict[str, list[Any]]
) -> None:
    assert spark_results[name] == duck_results[name]
    assert spark_results[name][2] is None or name == "ai_query_fail_on_error"  # NULL in, NULL out
    assert any(v is not None for v in spark_results[name])


def test_ai_agg_over_collect_list(spark: Any, spark_results: dict[str, list[Any]], workspace: Workspace) -> None:
    (answer,) = spark.sql("SELECT ai_agg(collect_list(txt), 'Summarise') FROM reviews").collect()[0]
    with connect(workspace, database=":memory:") as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", ROWS)
        (duck,) = con.sql("SELECT ai_agg(list(txt ORDER BY id), 'Summarise') FROM reviews").fetchone()
    assert answer.startswith("echo:") and duck.startswith("echo:")


def test_a_failing_row_fails_a_strict_spark_query_with_a_clear_message(spark: Any, spark_results: Any) -> None:
    with pytest.raises(Exception, match="unknown endpoint `nope`"):
        spark.sql("SELECT ai_query('nope', txt) FROM reviews").collect()


def test_gateway_mode_sends_every_call_to_one_openai_compatible_server(spark: Any, tmp_path: Path) -> None:
    import brickyard.sql.spark

    with FakeUpstream(model="fake-gpt") as up:
        brickyard.sql.spark.register(spark, up.base_url, default_endpoint="fake-gpt")
        rows = spark.sql(
            "SELECT id, ai_query('fake-gpt', txt) AS q, ai_gen(txt) AS g FROM reviews ORDER BY id"
        ).collect()
        assert rows[0]["q"] == "echo: " + ROWS[0][1]
        assert rows[0]["g"] == "echo: " + ROWS[0][1]
        assert rows[2]["q"] is None
        assert up.completed >= 4  # the executors called the gateway, not a local model
