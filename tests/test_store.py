"""The SQLite ledger: several processes append usage at once and no record is lost."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

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
