"""The AI functions on a real Spark standalone cluster (a master and two workers on 127.0.0.1).

Executors run in the workers' own JVMs and Python processes, started before the test sets anything: what
local[2] inherits for free (the driver's environment, keys, interpreter, import path) must be passed on
explicitly, and a lost executor's rows must be recomputed, never dropped.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DETERMINISTIC_CONFIG, make_key

import brickyard
import brickyard.sql.spark
from brickyard import Workspace
from brickyard.server.runner import BackgroundServer
from brickyard.sql.duckdb import connect
from brickyard.testing.spark_cluster import LocalSparkCluster, java_missing
from brickyard.testing.upstream import FakeUpstream

pytestmark = pytest.mark.spark

ROWS = 120
PARTITIONS = 4


def reviews(n: int = ROWS, tag: str = "") -> list[tuple[int, str | None]]:
    """Distinct texts (every row is one model call), a NULL every 40 rows."""
    return [
        (i, None if i % 40 == 7 else f"Review {tag}{i}: a warm film by Bob Smith, {i % 9} stars.") for i in range(n)
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSparkCluster]:
    reason = java_missing()
    if reason:
        pytest.skip(f"the Spark cluster tests need Java: {reason}")
    with LocalSparkCluster(workers=2, cores=1, memory="1g", log_dir=tmp_path_factory.mktemp("spark-cluster")) as c:
        yield c
        started = c.daemon_pids() + executor_pids(c)
    alive = [pid for pid in started if _running(pid)]
    assert not alive, f"the cluster left processes behind: {alive}"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def spark(cluster: LocalSparkCluster) -> Iterator[Any]:
    fast_start = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # small JVMs that start fast; the tests move little data
    conf = {
        "spark.sql.execution.arrow.maxRecordsPerBatch": "20",
        "spark.task.maxFailures": "2",  # one retry
        "spark.executor.extraJavaOptions": fast_start,
        "spark.driver.extraJavaOptions": fast_start,
    }
    session = cluster.session("brickyard-cluster-tests", **conf)
    yield session
    session.stop()


def table(spark: Any, rows: list[tuple[int, str | None]], name: str = "reviews") -> None:
    spark.createDataFrame(rows, "id int, txt string").repartition(PARTITIONS).createOrReplaceTempView(name)


def where_executors_ran(spark: Any, variable: str) -> list[tuple[str, str, bool]]:
    """(working folder, brickyard's folder, whether `variable` is set) as seen by each partition's Python worker."""

    def probe(_: Any) -> Iterator[tuple[str, str, bool]]:
        import os

        import brickyard

        yield os.getcwd(), os.path.dirname(brickyard.__file__), variable in os.environ

    return spark.sparkContext.parallelize(range(8), 8).mapPartitions(probe).collect()


def test_the_cluster_runs_python_on_both_workers_with_this_brickyard(spark: Any, cluster: LocalSparkCluster) -> None:
    seen = where_executors_ran(spark, "BRICKYARD_CLUSTER_NEVER_SET")
    workers = {Path(cwd).relative_to(cluster.log_dir).parts[0] for cwd, _, _ in seen}
    assert workers == {"worker-0", "worker-1"}  # each executor runs in its own worker's folder
    assert {folder for _, folder, _ in seen} == {os.path.dirname(brickyard.__file__)}
    (app,) = cluster.state()["activeapps"]
    assert app["cores"] == 2


def test_workspace_mode_returns_every_row_as_duckdb_does_and_records_usage(
    spark: Any, cluster: LocalSparkCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executors open the workspace folder themselves; an endpoint's key reaches them only through register()."""
    secret = "sk-cluster-only-4242-never-logged"
    with FakeUpstream(model="fake-gpt") as up:
        ws = Workspace.init(tmp_path / "ws")
        ws.config_path.write_text(
            DETERMINISTIC_CONFIG + f'[endpoints.up]\nmodel = "openai:fake-gpt"\nbase_url = "{up.base_url}"\n'
            'api_key_env = "BRICKYARD_CLUSTER_TEST_KEY"\ncache = false\nprice_input_per_1m = 1.0\n'
        )
        monkeypatch.setenv("BRICKYARD_CLUSTER_TEST_KEY", secret)  # on the driver only: the workers started before
        brickyard.sql.spark.register(spark, ws.path)
        rows = reviews(tag="ws ")
        table(spark, rows)
        got = spark.sql(
            "SELECT id, ai_query('det', txt) AS q, ai_classify(txt, array('fresh', 'rotten')) AS c, "
            "ai_query('up', txt) AS u FROM reviews"
        ).collect()
        assert not any(present for _, _, present in where_executors_ran(spark, "BRICKYARD_CLUSTER_TEST_KEY"))

        with connect(Workspace(ws.path), database=":memory:") as con:
            con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
            con.executemany("INSERT INTO reviews VALUES (?, ?)", rows)
            duck = con.sql(
                "SELECT id, ai_query('det', txt), ai_classify(txt, ARRAY['fresh', 'rotten']) FROM reviews"
            ).fetchall()

    assert sorted(r["id"] for r in got) == list(range(ROWS))  # every row, once
    by_id = {r["id"]: r for r in got}
    assert {i: (by_id[i]["q"], by_id[i]["c"]) for i, _, _ in duck} == {i: (q, c) for i, q, c in duck}
    assert {r["c"] for r in got} == {"fresh", "rotten", None}
    for i, text in rows:
        assert by_id[i]["u"] == (None if text is None else f"echo: {text}")
    texts = sum(text is not None for _, text in rows)
    assert up.completed == texts

    usage = Workspace(ws.path).store.usage(endpoint="up")
    assert len(usage) == texts and all(u.status == "ok" for u in usage)  # recorded by the executors, none lost
    assert secret not in cluster.log_text()
    assert all(secret not in value for _, value in spark.sparkContext.getConf().getAll())


def test_gateway_mode_calls_a_keyed_brickyard_serve_from_every_executor(
    spark: Any, cluster: LocalSparkCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway_ws = Workspace.init(tmp_path / "gateway")
    gateway_ws.config_path.write_text(DETERMINISTIC_CONFIG)
    secret = make_key(Workspace(gateway_ws.path), "spark-job", ("det",))
    monkeypatch.setenv(brickyard.sql.spark.GATEWAY_KEY_ENV, secret)  # driver only
    rows = reviews(tag="gw ")
    with BackgroundServer(Workspace(gateway_ws.path)) as server:
        brickyard.sql.spark.register(spark, f"{server.url}/v1", default_endpoint="det")
        table(spark, rows, "gw_reviews")
        got = spark.sql("SELECT id, ai_query('det', txt) AS q, ai_gen(txt) AS g FROM gw_reviews").collect()

    expected = {}
    with connect(Workspace(gateway_ws.path), database=":memory:") as con:
        con.execute("CREATE TABLE reviews (id INTEGER, txt VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?)", rows)
        expected = {i: q for i, q in con.sql("SELECT id, ai_query('det', txt) FROM reviews").fetchall()}
    assert {r["id"]: r["q"] for r in got} == expected
    assert len(got) == ROWS
    assert all((r["g"] is None) == (expected[r["id"]] is None) for r in got)

    texts = sum(text is not None for _, text in rows)
    usage = [u for u in Workspace(gateway_ws.path).store.usage(endpoint="det") if u.key == "spark-job"]
    assert len(usage) == 2 * texts  # ai_query and ai_gen: every call served by the gateway, for this key
    assert all(u.status == "ok" for u in usage)
    assert secret not in cluster.log_text()
    assert all(secret not in value for _, value in spark.sparkContext.getConf().getAll())


def test_a_workspace_the_executors_cannot_read_fails_the_query_with_the_fix(spark: Any, tmp_path: Path) -> None:
    """On a cluster the folder must be mounted on every worker; an executor that cannot see it says so."""
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(DETERMINISTIC_CONFIG)
    brickyard.sql.spark.register(spark, ws.path)
    ws.path.rename(tmp_path / "moved")  # as if the workers did not mount it
    table(spark, reviews(8, tag="gone "), "gone")
    with pytest.raises(
        Exception, match=r"not readable on this Spark executor .*Fix: put it on a filesystem every worker"
    ):
        spark.sql("SELECT ai_query('det', txt) FROM gone").collect()
    assert not (tmp_path / "ws").exists()  # nothing silently created an empty workspace in its place


def test_bad_targets_and_forwarded_variables_fail_on_the_driver(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(brickyard.UserError, match=r"neither a workspace folder nor an http.*Fix: brickyard init"):
        brickyard.sql.spark.register(spark, tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "brickyard.toml").write_text("[endpoints.x]\nmodel = 3\n")
    with pytest.raises(brickyard.ConfigError, match=r"endpoints\.x\.model"):
        brickyard.sql.spark.register(spark, tmp_path / "bad")
    monkeypatch.delenv("BRICKYARD_CLUSTER_UNSET", raising=False)
    with pytest.raises(brickyard.UserError, match="forward_env names BRICKYARD_CLUSTER_UNSET, not set on the driver"):
        brickyard.sql.spark.register(spark, "http://127.0.0.1:9/v1", forward_env=["BRICKYARD_CLUSTER_UNSET"])
    with pytest.raises(brickyard.UserError, match="forward_env names BRICKYARD_CLUSTER_UNSET, not"):  # a bare name
        brickyard.sql.spark.register(spark, "http://127.0.0.1:9/v1", forward_env="BRICKYARD_CLUSTER_UNSET")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def executor_pids(cluster: LocalSparkCluster) -> list[int]:
    """The executor JVMs the workers launched (their child processes running the executor backend)."""
    return [
        pid
        for worker in cluster.daemon_pids()[1:]
        for pid in _children(worker)
        if b"CoarseGrainedExecutorBackend" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_an_executor_killed_mid_query_loses_no_row(spark: Any, cluster: LocalSparkCluster, tmp_path: Path) -> None:
    """Requests are held at the upstream until more are waiting than one executor may send at once (4): both
    executors are then mid-batch, and one is killed. Spark runs its task again elsewhere; every row comes back."""
    held, release, lock = [0], threading.Event(), threading.Lock()

    def hold(body: dict[str, Any]) -> None:
        with lock:
            held[0] += 1
        release.wait(60)
        return None

    with FakeUpstream(model="fake-gpt", scenario=hold) as up:
        ws = Workspace.init(tmp_path / "ws")
        ws.config_path.write_text(
            f'[endpoints.up]\nmodel = "openai:fake-gpt"\nbase_url = "{up.base_url}"\ncache = false\n'
            "max_concurrency = 4\n"
        )
        brickyard.sql.spark.register(spark, ws.path)
        rows = reviews(tag="kill ")
        table(spark, rows, "kill_reviews")
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["rows"] = spark.sql("SELECT id, ai_query('up', txt) AS u FROM kill_reviews").collect()
            except Exception as exc:  # surfaced by the assertion below
                result["error"] = exc

        query = threading.Thread(target=run)
        query.start()
        deadline = time.monotonic() + 60
        while held[0] <= 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held[0] > 4, "the two executors never had requests in flight together"
        victims = executor_pids(cluster)[:1]  # the first worker's executor, mid-batch
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        release.set()
        query.join(120)
        for pid in executor_pids(cluster):  # every executor, the moment the query returned
            os.kill(pid, signal.SIGKILL)
        assert len(victims) == 1 and not query.is_alive()

    assert "error" not in result, result.get("error")
    got = result["rows"]
    assert sorted(r["id"] for r in got) == list(range(ROWS))
    assert all(r["u"] == (None if t is None else f"echo: {t}") for r, (_, t) in zip(sorted(got), rows, strict=True))
    texts = sum(t is not None for _, t in rows)
    assert up.requests > texts  # the killed executor's batch was sent again
    usage = Workspace(ws.path).store.usage(endpoint="up")
    assert texts <= len(usage) <= up.requests  # each returned row's call was in the ledger before its task ended


def test_without_java_the_cluster_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    monkeypatch.delenv("JAVA_HOME", raising=False)
    cluster = LocalSparkCluster(log_dir=tmp_path / "logs")
    with pytest.raises(brickyard.UserError, match=r"Java is not installed .*Fix: install Java 17"):
        cluster.start()
    assert cluster.daemon_pids() == []  # nothing was started
