"""The SQLite ledger: several processes append usage at once and no record is lost."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from brickyard.store import SQLiteStore, UsageRecord

RECORDS_PER_WRITER = 400


def _writer(path: str, writer: int, start: float) -> None:
    store = SQLiteStore(Path(path))
    while time.time() < start:  # line the writers up so their inserts really interleave
        time.sleep(0.001)
    for i in range(RECORDS_PER_WRITER):
        store.record_usage(
            UsageRecord(ts=time.time(), endpoint=f"e{writer}", model="m", tag="t", input_tokens=i, cost_usd=0.001)
        )
    store.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    SQLiteStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 1.5
    procs = [ctx.Process(target=_writer, args=(str(path), w, start)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = SQLiteStore(path)
    records = store.usage()
    assert len(records) == 2 * RECORDS_PER_WRITER
    for writer in range(2):
        mine = [r.input_tokens for r in records if r.endpoint == f"e{writer}"]
        assert mine == list(range(RECORDS_PER_WRITER))  # each writer's records, all there, in its order
    summary = {row.group: row for row in store.summarize(["endpoint"])}
    assert summary[("e0",)].calls == RECORDS_PER_WRITER
    assert abs(store.spent_usd(since=0, tag="t") - 2 * RECORDS_PER_WRITER * 0.001) < 1e-9


def test_wal_mode_and_cache_roundtrip(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.sqlite")
    (mode,) = store._db.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    assert store.cache_get("k") is None
    store.cache_put("k", {"text": "v"})
    assert store.cache_get("k") == {"text": "v"}
    assert store.cache_clear() == 1
    assert store.cache_get("k") is None


def test_usage_filters(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.sqlite")
    for ts, endpoint, tag in [(100.0, "a", "x"), (200.0, "a", "y"), (300.0, "b", "x")]:
        store.record_usage(UsageRecord(ts=ts, endpoint=endpoint, model="m", tag=tag, cost_usd=1.0))
    assert [r.ts for r in store.usage(since=150)] == [200.0, 300.0]
    assert [r.ts for r in store.usage(endpoint="a", tag="x")] == [100.0]
    assert [r.ts for r in store.usage(until=200)] == [100.0]
    assert store.spent_usd(since=0, endpoint="a") == 2.0


OLD_SCHEMA = """
CREATE TABLE usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, endpoint TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL, tag TEXT, requested_endpoint TEXT, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, tokens_estimated INTEGER NOT NULL, cost_usd REAL NOT NULL,
    latency_s REAL NOT NULL, cache_hit INTEGER NOT NULL, error TEXT, extra TEXT
);
CREATE INDEX usage_endpoint_ts ON usage (endpoint, ts);
INSERT INTO usage (ts, endpoint, model, status, input_tokens, output_tokens, tokens_estimated, cost_usd,
                   latency_s, cache_hit) VALUES (1.0, 'old', 'm', 'ok', 1, 1, 0, 0.5, 0.1, 0);
"""


def test_a_ledger_from_before_keys_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    store = SQLiteStore(path)
    store.record_usage(UsageRecord(ts=2.0, endpoint="new", model="m", key="team-a", cost_usd=1.0))
    assert [(r.endpoint, r.key) for r in store.usage()] == [("old", None), ("new", "team-a")]
    indexes = {row[1] for row in store._db.execute("PRAGMA index_list(usage)")}
    assert "usage_key_ts" in indexes
    store.close()
    SQLiteStore(path).close()  # opening again (column already there) is fine


def test_usage_by_key(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.sqlite")
    rows = [
        (100.0, "a", "team-a", 1.0),
        (200.0, "b", "team-a", 2.0),
        (300.0, "a", "team-b", 4.0),
        (400.0, "a", None, 8.0),
    ]
    for ts, endpoint, key, cost in rows:
        store.record_usage(UsageRecord(ts=ts, endpoint=endpoint, model="m", key=key, cost_usd=cost))
    assert [r.ts for r in store.usage(key="team-a")] == [100.0, 200.0]
    assert [r.ts for r in store.usage(key="team-a", endpoint="a")] == [100.0]
    assert store.spent_usd(since=0, key="team-a") == 3.0
    assert store.spent_usd(since=150, key="team-a") == 2.0
    assert store.spent_usd(since=0, endpoint="a", key="team-b") == 4.0
    summary = {row.group: (row.calls, row.cost_usd) for row in store.summarize(["key"])}
    assert summary == {("-",): (1, 8.0), ("team-a",): (2, 3.0), ("team-b",): (1, 4.0)}
    by_both = store.summarize(["key", "endpoint"], since=150, endpoint="a")
    assert [(r.group, r.calls) for r in by_both] == [(("-", "a"), 1), (("team-b", "a"), 1)]
    store.close()


def test_queued_rows_count_for_budgets_and_wait_out_a_locked_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SQLiteStore(path)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, holding the write lock
    other.execute("BEGIN IMMEDIATE")
    started = time.perf_counter()
    store.record_usage(UsageRecord(ts=10.0, endpoint="e", model="m", key="k", cost_usd=0.25))
    assert time.perf_counter() - started < 0.05  # queued, not waiting for the lock
    time.sleep(0.1)  # the store's writer is now waiting for the other process's lock
    started = time.perf_counter()
    assert store.spent_usd(since=0, key="k") == 0.25  # budgets see the queued row while it waits...
    assert time.perf_counter() - started < 1.0  # ...and a budget check does not wait for the writer
    assert store.spent_usd(since=0, key="other") == 0.0
    with pytest.raises(RuntimeError, match="could not be written"):
        store.flush(timeout_s=0.3)  # a reader that cannot wait says so, naming the ledger
    assert other.execute("SELECT count(*) FROM usage").fetchone() == (0,)  # not written yet: the lock is held
    other.execute("COMMIT")
    store.flush()
    assert other.execute("SELECT count(*) FROM usage").fetchone() == (1,)
    assert store.spent_usd(since=0, key="k") == 0.25  # counted once, not twice
    other.close()
    store.close()


def test_a_second_store_on_the_same_file_reads_rows_the_first_has_queued(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    first = SQLiteStore(path)
    second = SQLiteStore(path)  # e.g. `Workspace(path).store` opened again in the same process
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # keeps the first store's row in its queue for a while
    first.record_usage(UsageRecord(ts=1.0, endpoint="e", model="m"))
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    assert len(second.usage()) == 1  # waited for the first store's write
    other.close()
    first.close()
    second.close()


def test_unbuffered_store_writes_before_returning(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    store = SQLiteStore(path, write_behind=False)
    store.record_usage(UsageRecord(ts=1.0, endpoint="e", model="m"))
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM usage").fetchone() == (1,)
    store.close()


def _mixed_worker(path: str, role: str, worker: int, start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)
    if role == "reader":  # a budget checker and a `brickyard usage` at the same time
        store = SQLiteStore(Path(path))
        for _ in range(200):
            store.spent_usd(since=0, key="k0")
            store.summarize(["key"])
        store.close()
        return
    if role == "cli":  # short-lived CLI invocations: open, write a few, close
        for i in range(RECORDS_PER_WRITER // 10):
            store = SQLiteStore(Path(path))
            for j in range(10):
                store.record_usage(
                    UsageRecord(ts=time.time(), endpoint="cli", model="m", key=f"k{worker}", input_tokens=i * 10 + j)
                )
            store.close()
        return
    store = SQLiteStore(Path(path), write_behind=role != "sync")
    for i in range(RECORDS_PER_WRITER):
        store.record_usage(UsageRecord(ts=time.time(), endpoint="srv", model="m", key=f"k{worker}", input_tokens=i))
    if role != "no-close":  # "no-close" exits without closing: the interpreter-exit flush must write its rows
        store.close()


def test_server_workers_and_cli_processes_share_a_fresh_ledger_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "ledger.sqlite"  # not created yet: the processes race to create it
    roles = ["buffered", "buffered", "sync", "no-close", "cli", "reader"]
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 2.0
    procs = [ctx.Process(target=_mixed_worker, args=(str(path), role, w, start)) for w, role in enumerate(roles)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    store = SQLiteStore(path)
    writers = [w for w, role in enumerate(roles) if role != "reader"]
    for w in writers:
        mine = [r.input_tokens for r in store.usage(key=f"k{w}")]
        assert mine == list(range(RECORDS_PER_WRITER)), roles[w]  # all there, in the writer's order
    assert len(store.usage()) == len(writers) * RECORDS_PER_WRITER
    store.close()
