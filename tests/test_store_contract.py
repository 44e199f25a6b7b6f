"""One contract for every `Store` backend: the SQLite files and a real PostgreSQL server (`postgres_server`)."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brickyard._errors import ConfigError, MissingExtraError, UserError
from brickyard.config import Window
from brickyard.store import (
    Hold,
    Keys,
    KeyStore,
    PostgresKeyStore,
    PostgresStore,
    Refusal,
    SQLiteStore,
    Store,
    UsageRecord,
)
from brickyard.store.keys import KEYS_NAME, hash_secret
from brickyard.workspace import Workspace

DAY = 86_400.0


def open_store(target: str) -> Store:
    """A store on `target`: a PostgreSQL url or the path of a SQLite ledger."""
    return PostgresStore(target) if target.startswith("postgresql://") else SQLiteStore(Path(target))


def open_keys(target: str) -> Keys:
    return PostgresKeyStore(target) if target.startswith("postgresql://") else KeyStore(Path(target).parent / KEYS_NAME)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def stores(target: str) -> Iterator[Callable[[], Store]]:
    """Open stores on the same backing (as other processes or hosts would); all closed at teardown."""
    opened: list[Store] = []

    def make() -> Store:
        opened.append(open_store(target))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(stores: Callable[[], Store]) -> Store:
    return stores()


def usage(ts: float, endpoint: str = "e1", cost: float = 0.1, **fields: object) -> UsageRecord:
    return UsageRecord(ts=ts, endpoint=endpoint, model="m", cost_usd=cost, input_tokens=10, output_tokens=5, **fields)  # type: ignore[arg-type]


# -- usage ----------------------------------------------------------------------------------------------------


def test_usage_is_recorded_read_back_and_summarized(store: Store) -> None:
    day0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    store.record_usage(usage(day0 + 10, tag="a", key="k1", extra={"n": 1}))
    store.record_usage(usage(day0 + 20, endpoint="e2", cost=0.25, status="error", error="boom"))
    store.record_usage(usage(day0 + DAY + 5, tag="a", cost=0.5, cache_hit=True, latency_s=2.0))

    rows = store.usage()
    assert [(r.endpoint, r.cost_usd) for r in rows] == [("e1", 0.1), ("e2", 0.25), ("e1", 0.5)]
    assert rows[0].extra == {"n": 1} and rows[0].key == "k1" and rows[1].error == "boom" and rows[2].cache_hit
    assert [r.ts for r in store.usage(since=day0 + 15, until=day0 + DAY)] == [day0 + 20]
    assert len(store.usage(tag="a")) == 2 and len(store.usage(key="k1")) == 1 and len(store.usage(endpoint="e2")) == 1

    by_endpoint = store.summarize(["endpoint"])
    assert [(r.group, r.calls, r.errors, r.input_tokens, r.output_tokens) for r in by_endpoint] == [
        (("e1",), 2, 0, 20, 10),
        (("e2",), 1, 1, 10, 5),
    ]
    assert by_endpoint[0].cost_usd == pytest.approx(0.6) and by_endpoint[0].cache_hits == 1
    assert by_endpoint[0].latency_s_avg == pytest.approx(1.0)
    assert [r.group for r in store.summarize(["day", "tag"])] == [
        ("2023-11-15", "-"),
        ("2023-11-15", "a"),
        ("2023-11-16", "a"),
    ]
    assert [(r.group, r.calls) for r in store.summarize(["key", "status"])] == [
        (("-", "error"), 1),
        (("-", "ok"), 1),
        (("k1", "ok"), 1),
    ]
    assert [(r.group, r.calls) for r in store.summarize([])] == [(("all",), 3)]
    # the buckets' starts in unix seconds (the web console's charts), the same text on every backend
    assert [(r.group, r.calls) for r in store.summarize(["day_start"])] == [
        ((str(int(day0)),), 2),
        ((str(int(day0 + DAY)),), 1),
    ]
    assert [r.group for r in store.summarize(["hour_start", "endpoint"], since=day0, until=day0 + 3600)] == [
        (str(int(day0)), "e1"),
        (str(int(day0)), "e2"),
    ]
    with pytest.raises(UserError, match="cannot group usage"):
        store.summarize(["colour"])

    assert store.spent_usd(since=0) == pytest.approx(0.85)
    assert store.spent_usd(since=day0 + DAY) == pytest.approx(0.5)
    assert store.spent_usd(since=0, endpoint="e1", tag="a") == pytest.approx(0.6)
    assert store.spent_usd(since=0, key="k1") == pytest.approx(0.1)


def test_another_store_on_the_same_backing_reads_what_was_flushed(stores: Callable[[], Store]) -> None:
    first, second = stores(), stores()
    first.record_usage(usage(time.time(), cost=0.2))
    first.cache_put("q", {"answer": 1})
    first.flush()
    assert second.spent_usd(since=0) == pytest.approx(0.2)
    assert second.cache_get("q") == {"answer": 1}


def test_a_trickle_of_rows_is_written_in_batches_and_reaches_other_stores_without_a_flush(
    stores: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row per millisecond (a gateway at one connection): batches, not a transaction per row; another
    store (another process) sees every row soon after without this one flushing; a flush does not wait."""
    first, second = stores(), stores()
    batches: list[int] = []
    write = first._write  # type: ignore[attr-defined]

    def counting(rows: list[object], *args: object, **kwargs: object) -> None:
        batches.append(len(rows))
        write(rows, *args, **kwargs)

    monkeypatch.setattr(first, "_write", counting)
    for _ in range(100):
        first.record_usage(usage(time.time(), cost=0.01))
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while second.spent_usd(since=0) < 1.0 - 1e-9 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert second.spent_usd(since=0) == pytest.approx(1.0)
    assert sum(batches) == 100
    assert len(batches) <= 40, batches  # a transaction per row would be 100
    first.record_usage(usage(time.time(), cost=0.5))
    started = time.monotonic()
    first.flush()
    assert time.monotonic() - started < 0.5
    assert second.spent_usd(since=0) == pytest.approx(1.5)


def test_cache_put_get_replace_and_clear(store: Store) -> None:
    assert store.cache_get("missing") is None
    store.cache_put("a", {"text": "one"})
    store.cache_put("b", {"text": "two", "n": [1, 2]})
    assert store.cache_get("a") == {"text": "one"}
    store.cache_put("a", {"text": "uno"})
    assert store.cache_get("a") == {"text": "uno"} and store.cache_get("b") == {"text": "two", "n": [1, 2]}
    assert store.cache_clear() == 2
    assert store.cache_get("a") is None


# -- budgets --------------------------------------------------------------------------------------------------


def test_the_refusal_rule_counts_what_is_settled_and_what_is_held(store: Store) -> None:
    hold = Hold("query:q1", 1.0)
    first = store.reserve([hold], 0.6, ttl_s=60)
    assert isinstance(first, str)
    refused = store.reserve([hold], 0.5, ttl_s=60)
    assert refused == Refusal(hold=hold, spent_usd=0.0, held_usd=pytest.approx(0.6))
    second = store.reserve([hold], 0.4, ttl_s=60)  # exactly fills the budget
    assert isinstance(second, str)
    assert store.budget_state(hold) == (0.0, pytest.approx(1.0))

    store.settle(first, 0.5)  # the call cost less than reserved
    assert store.budget_state(hold) == (pytest.approx(0.5), pytest.approx(0.4))
    assert isinstance(store.reserve([hold], 0.1, ttl_s=60), str)
    assert isinstance(store.reserve([hold], 0.0, ttl_s=60), str)  # zero fits while the budget is not spent
    store.settle(second, 0.5)
    refused = store.reserve([hold], 0.0, ttl_s=60)
    assert isinstance(refused, Refusal) and refused.spent_usd == pytest.approx(1.0)


def test_a_refusal_names_the_first_budget_that_refuses_and_holds_nothing(store: Store) -> None:
    roomy, tight = Hold("sweep:s", 10.0), Hold("query:q", 0.1)
    refused = store.reserve([roomy, tight], 0.2, ttl_s=60)
    assert isinstance(refused, Refusal) and refused.hold == tight
    assert store.budget_state(roomy) == (0.0, 0.0)
    ok = store.reserve([roomy, tight], 0.05, ttl_s=60)
    assert isinstance(ok, str)
    assert store.budget_state(roomy) == (0.0, pytest.approx(0.05))
    store.settle(ok, 0.07)
    assert store.budget_state(roomy) == (pytest.approx(0.07), 0.0)
    assert store.budget_state(tight) == (pytest.approx(0.07), 0.0)


@pytest.mark.parametrize("scope,field", [("endpoint:e1", {}), ("tag:t1", {"tag": "t1"}), ("key:k1", {"key": "k1"})])
def test_spend_is_seeded_from_the_ledger_once_per_window(store: Store, scope: str, field: dict[str, str]) -> None:
    start = time.time() - 3600
    store.record_usage(usage(start - 10, cost=5.0, **field))  # before the window: not counted
    store.record_usage(usage(start + 10, cost=0.3, **field))  # queued, not yet flushed: still counted
    store.record_usage(usage(start + 20, endpoint="other", cost=0.9))
    hold = Hold(scope, 1.0, window_start=start)
    refused = store.reserve([hold], 0.8, ttl_s=60)
    assert isinstance(refused, Refusal) and refused.spent_usd == pytest.approx(0.3)
    reservation = store.reserve([hold], 0.7, ttl_s=60)
    assert isinstance(reservation, str)
    store.record_usage(usage(start + 30, cost=0.2, **field))  # the ledger after seeding: settle counts, not this
    store.settle(reservation, 0.2)
    assert store.budget_state(hold) == (pytest.approx(0.5), 0.0)
    assert store.budget_state(Hold("query:" + scope, 1.0)) == (0.0, 0.0)  # other scopes start at 0


def test_budget_state_of_an_unreserved_window_reads_the_ledger(store: Store) -> None:
    start = time.time() - 60
    store.record_usage(usage(start + 1, cost=0.25))
    assert store.budget_state(Hold("endpoint:e1", 1.0, start)) == (pytest.approx(0.25), 0.0)


def test_expired_holds_stop_counting_but_a_late_settle_still_charges(store: Store) -> None:
    hold = Hold("query:slow", 1.0)
    stale = store.reserve([hold], 0.9, ttl_s=0.05)
    assert isinstance(stale, str)
    assert isinstance(store.reserve([hold], 0.9, ttl_s=60), Refusal)
    time.sleep(0.1)
    fresh = store.reserve([hold], 0.9, ttl_s=60)  # the first one's process crashed, as far as anyone knows
    assert isinstance(fresh, str)
    store.settle(stale, 0.4)
    assert store.budget_state(hold) == (pytest.approx(0.4), pytest.approx(0.9))


def test_settle_is_idempotent_and_ignores_unknown_ids(store: Store) -> None:
    hold = Hold("query:once", 1.0)
    reservation = store.reserve([hold], 0.3, ttl_s=60)
    assert isinstance(reservation, str)
    store.settle(reservation, 0.3)
    store.settle(reservation, 0.3)
    store.settle("no-such-reservation", 5.0)
    assert store.budget_state(hold) == (pytest.approx(0.3), 0.0)


def test_windows_are_separate_and_a_settle_charges_the_window_it_reserved_in(store: Store) -> None:
    today = time.time() // DAY * DAY
    yesterday = Hold("tag:team", 1.0, window_start=today - DAY)
    late = store.reserve([yesterday], 0.9, ttl_s=60)  # started before midnight
    assert isinstance(late, str)
    now = Hold("tag:team", 1.0, window_start=today)
    early = store.reserve([now], 0.9, ttl_s=60)
    assert isinstance(early, str)
    store.settle(late, 0.8)  # finished after midnight
    store.settle(early, 0.1)
    assert store.budget_state(yesterday) == (pytest.approx(0.8), 0.0)
    assert store.budget_state(now) == (pytest.approx(0.1), 0.0)


def test_reservations_are_shared_by_every_store_on_the_backing(stores: Callable[[], Store]) -> None:
    first, second = stores(), stores()
    hold = Hold("endpoint:shared", 0.5)
    assert isinstance(first.reserve([hold], 0.4, ttl_s=60), str)
    refused = second.reserve([hold], 0.2, ttl_s=60)
    assert isinstance(refused, Refusal) and refused.held_usd == pytest.approx(0.4)


# -- rate limits ----------------------------------------------------------------------------------------------


def test_take_rate_refuse_mode_books_nothing_while_waiting(store: Store) -> None:
    take = store.take_rate
    assert take("key:a", 60, 1, burst=2, book_if_waiting=False) == 0.0  # burst: two at once
    assert take("key:a", 60, 1, burst=2, book_if_waiting=False) == 0.0
    wait = take("key:a", 60, 1, burst=2, book_if_waiting=False)
    assert wait == pytest.approx(1.0, abs=0.1)
    assert take("key:a", 60, 1, burst=2, book_if_waiting=False) == pytest.approx(1.0, abs=0.1)  # nothing booked
    assert take("key:b", 60, 1, burst=2, book_if_waiting=False) == 0.0  # scopes are separate


def test_take_rate_pace_mode_books_and_spaces_the_callers(store: Store) -> None:
    waits = [store.take_rate("endpoint:e", 60, 1, burst=1, book_if_waiting=True) for _ in range(4)]
    assert waits == [0.0, pytest.approx(1.0, abs=0.1), pytest.approx(2.0, abs=0.1), pytest.approx(3.0, abs=0.1)]
    # 30 tokens = 3 s of allowance, in a bucket of 1: the excess over the bucket (2.9 s) is waited
    assert store.take_rate("tpm:e", 600, 30, burst=1, book_if_waiting=True) == pytest.approx(2.9, abs=0.1)
    assert store.take_rate("tpm:e", 600, 1, burst=1, book_if_waiting=False) == pytest.approx(3.0, abs=0.1)


# -- keys -----------------------------------------------------------------------------------------------------


def test_keys_create_find_by_hash_list_and_revoke(target: str) -> None:
    keys = open_keys(target)
    try:
        key, secret = keys.create("team-a", ("gpt", "agent:kb"), sql=True, rpm=10, budget=(5.0, Window.day))
        assert secret.startswith("bky-") and secret not in repr(keys.listing())
        found = keys.by_hash(hash_secret(secret))
        assert found == key and found.scopes == ("gpt", "agent:kb") and found.sql and found.rpm == 10
        assert found.budget_usd == 5.0 and found.budget_window is Window.day and found.active
        assert keys.by_hash(hash_secret(secret + "x")) is None
        with pytest.raises(UserError, match="exists"):
            keys.create("team-a", ("*",))
        with pytest.raises(UserError, match="must be letters"):
            keys.create("bad name", ("*",))
        keys.create("team-b", ("*",), admin=True)
        assert [k.name for k in keys.listing()] == ["team-a", "team-b"] and keys.count() == 2
        revoked = keys.revoke("team-a")
        assert not revoked.active and keys.revoke("team-a").revoked == revoked.revoked  # revoking again keeps it
        by_hash = keys.by_hash(hash_secret(secret))
        assert by_hash is not None and not by_hash.active and keys.count() == 2
        with pytest.raises(UserError, match="no key named nobody"):
            keys.revoke("nobody")
        assert keys.get("nobody") is None
    finally:
        keys.close()


# -- the budget holds under concurrency -----------------------------------------------------------------------


def _hammer(target: str, start_at: float, threads: int, attempts: int) -> list[float]:
    """One process: `threads` threads each trying `attempts` reservations of 0.01 and settling at that cost."""
    store = open_store(target)
    admitted: list[float] = []
    lock = threading.Lock()
    holds = [Hold("endpoint:hot", 0.34, window_start=start_at - DAY), Hold("sweep:all", 100.0)]

    def run() -> None:
        while time.time() < start_at:
            time.sleep(0.001)
        for _ in range(attempts):
            reservation = store.reserve(holds, 0.01, ttl_s=60)
            if isinstance(reservation, str):
                time.sleep(0.002)  # the model call
                store.settle(reservation, 0.01)
                with lock:
                    admitted.append(0.01)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()
    return admitted


def test_four_processes_of_sixteen_threads_cannot_break_a_budget(target: str) -> None:
    open_store(target).close()  # create the schema before the race
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # every process is up and every thread waiting by then
    with context.Pool(4) as pool:
        results = pool.starmap(_hammer, [(target, start_at, 16, 2)] * 4)
    admitted = [cost for result in results for cost in result]
    assert len(admitted) == 34
    store = open_store(target)
    try:
        spent, held = store.budget_state(Hold("endpoint:hot", 0.34, window_start=start_at - DAY))
    finally:
        store.close()
    assert spent <= 0.34 + 1e-9 and spent == pytest.approx(0.34) and held == 0.0
    assert round(sum(admitted), 9) <= 0.34


# -- configuration --------------------------------------------------------------------------------------------


def test_the_workspace_opens_postgres_when_store_url_is_set(tmp_path: Path, postgres_url: str) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(f'[store]\nurl = "{postgres_url}"\n', encoding="utf-8")
    workspace = Workspace(workspace.path)
    assert isinstance(workspace.store, PostgresStore) and isinstance(workspace.keys, PostgresKeyStore)
    workspace.keys.create("k", ("*",))
    import asyncio

    asyncio.run(workspace.aclose())
    assert not (workspace.path / KEYS_NAME).exists() and not (workspace.path / "ledger.sqlite").exists()
    assert [k.name for k in Workspace(workspace.path).keys.listing()] == ["k"]


def test_the_workspace_defaults_to_its_sqlite_files(workspace: Workspace) -> None:
    assert isinstance(workspace.store, SQLiteStore) and isinstance(workspace.keys, KeyStore)
    assert workspace.keys.path == workspace.path / KEYS_NAME  # type: ignore[attr-defined]


def test_a_store_url_that_is_not_postgres_is_a_config_error(workspace: Workspace) -> None:
    workspace.config_path.write_text('[store]\nurl = "mysql://u@h/db"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        _ = Workspace(workspace.path).settings
    assert caught.value.key == "store.url" and str(workspace.config_path) in str(caught.value)
    assert "postgresql://" in caught.value.fix


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'brickyard\[postgres\]'"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none")
