"""Budget leases (brickyard.models.budget_leases): fewer store transactions, the same bound, nothing stranded.

Each `Budgets` below stands for one process: several of them on the same store share its budgets the way
server workers and hosts do. Every test runs on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from brickyard._errors import KeyBudgetExceededError, QueryCostCapError
from brickyard.models.budget import Budgets, Reservation
from brickyard.models.calls import Caller, CallerBudget, EmbedCall
from brickyard.store import PostgresStore, SQLiteStore, Store
from brickyard.store.base import Hold, Refusal

CALL_USD = 0.01


class CountingStore:
    """A real store that counts the budget transactions it is asked for."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.reserves = 0
        self.settles = 0

    def reserve(self, holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        self.reserves += 1
        return self.inner.reserve(holds, amount_usd, ttl_s=ttl_s)

    def settle(self, reservation: str, cost_usd: float) -> None:
        self.settles += 1
        self.inner.settle(reservation, cost_usd)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CountingStore]]:
    """Stores on one backing, as separate processes or hosts would open them."""
    target = str(tmp_path / "ledger.sqlite") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened: list[Store] = []

    def make() -> CountingStore:
        opened.append(PostgresStore(target) if target.startswith("postgresql://") else SQLiteStore(Path(target)))
        return CountingStore(opened[-1])

    yield make
    for store in opened:
        store.close()


def budgets_on(store: CountingStore, *, lease_s: float = 30.0, wait_s: float = 10.0) -> Budgets:
    budgets = Budgets(store, [], wait_s=wait_s)  # type: ignore[arg-type]
    budgets.leases.lease_s = lease_s
    return budgets


def call_with(*brought: CallerBudget) -> EmbedCall:
    return EmbedCall(texts=("x",), caller=Caller(key="k", budgets=brought))


KEY = CallerBudget("key:k", 0.34, "day")


async def run_calls(budgets: Budgets, n: int, *, cost: float = CALL_USD, concurrency: int = 64) -> tuple[int, int]:
    """`n` calls of CALL_USD each through `budgets`, `concurrency` at a time; (admitted, refused)."""
    gate = asyncio.Semaphore(concurrency)
    admitted = refused = 0

    async def one() -> None:
        nonlocal admitted, refused
        async with gate:
            try:
                held: Reservation = await budgets.reserve(budgets.applying("e", call_with(KEY)), CALL_USD)
            except KeyBudgetExceededError:
                refused += 1
                return
            admitted += 1
            await asyncio.sleep(0.001)  # the call is in flight
            budgets.settle(held, cost)

    await asyncio.gather(*(one() for _ in range(n)))
    return admitted, refused


def spent_and_held(store: CountingStore, brought: CallerBudget = KEY) -> tuple[float, float]:
    hold = Budgets(store, []).applying("e", call_with(brought))[0].hold  # type: ignore[arg-type]
    return store.budget_state(hold)


async def test_calls_reserve_against_a_lease_not_the_store_one_by_one(stores: Callable[[], CountingStore]) -> None:
    store = stores()
    budgets = budgets_on(store)
    big = CallerBudget("key:k", 100.0, "day")
    for _ in range(200):
        held = await budgets.reserve(budgets.applying("e", call_with(big)), CALL_USD)
        budgets.settle(held, CALL_USD / 2)
    # leases of 4, 8, 16, ... calls' worth: a handful of store transactions for 200 calls, not 400
    assert store.reserves <= 8, store.reserves
    budgets.close()
    assert spent_and_held(store, big) == (pytest.approx(200 * CALL_USD / 2), 0.0)  # every cost, nothing held


async def test_several_processes_on_leases_never_exceed_the_limit_and_use_all_of_it(
    stores: Callable[[], CountingStore],
) -> None:
    # four "processes", 64 calls in flight in each, every call reserving and costing CALL_USD: 34 fit 0.34
    processes = [budgets_on(stores(), lease_s=0.2) for _ in range(4)]
    results = await asyncio.gather(*(run_calls(b, 40) for b in processes))
    for budgets in processes:
        budgets.close()
    admitted = sum(a for a, _ in results)
    spent, held = spent_and_held(processes[0].store)  # type: ignore[arg-type]
    assert spent <= KEY.limit_usd + 1e-9
    assert held == 0.0
    assert admitted == 34  # leases held by one process returned to the others: the whole budget was usable
    assert spent == pytest.approx(admitted * CALL_USD)


async def test_an_idle_process_lease_returns_to_the_budget_within_its_time(
    stores: Callable[[], CountingStore],
) -> None:
    idle, busy = budgets_on(stores(), lease_s=0.3), budgets_on(stores(), lease_s=0.3)
    small = CallerBudget("key:k", 4 * CALL_USD, "day")
    held = await idle.reserve(idle.applying("e", call_with(small)), CALL_USD)  # leases all four calls' worth
    idle.settle(held, CALL_USD)
    started = time.monotonic()
    for _ in range(3):  # the other process waits for the idle lease to expire, then gets the rest
        got = await busy.reserve(busy.applying("e", call_with(small)), CALL_USD)
        busy.settle(got, CALL_USD)
    assert time.monotonic() - started < 3.0
    with pytest.raises(KeyBudgetExceededError):
        await busy.reserve(busy.applying("e", call_with(small)), CALL_USD)
    idle.close()
    busy.close()
    assert spent_and_held(idle.store, small) == (pytest.approx(4 * CALL_USD), 0.0)  # type: ignore[arg-type]


async def test_a_job_cap_is_reserved_call_by_call_so_its_spend_reads_exactly(
    stores: Callable[[], CountingStore],
) -> None:
    store = stores()
    budgets = budgets_on(store)
    cap = CallerBudget("query:q1", 1.0, "job", fix="raise --max-cost")
    for _ in range(5):
        held = await budgets.reserve(budgets.applying("e", call_with(cap)), CALL_USD)
        assert spent_and_held(store, cap)[1] == pytest.approx(CALL_USD)  # exactly this call is held
        budgets.settle(held, CALL_USD)
    assert store.reserves == 5
    assert spent_and_held(store, cap) == (pytest.approx(5 * CALL_USD), 0.0)  # no lease to close first
    tiny = CallerBudget("query:q2", CALL_USD / 2, "job", fix="raise --max-cost")
    with pytest.raises(QueryCostCapError):
        await budgets.reserve(budgets.applying("e", call_with(tiny)), CALL_USD)
    budgets.close()


async def test_a_refusal_in_the_store_for_one_budget_releases_the_lease_taken_for_another(
    stores: Callable[[], CountingStore],
) -> None:
    store = stores()
    budgets = budgets_on(store, wait_s=0.0)
    cap = CallerBudget("query:q", CALL_USD / 2, "job", fix="raise --max-cost")
    with pytest.raises(QueryCostCapError):
        await budgets.reserve(budgets.applying("e", call_with(KEY, cap)), CALL_USD)
    lease = budgets.leases._current[("key:k", budgets.applying("e", call_with(KEY))[0].hold.window_start)]
    assert lease.in_flight == 0 and lease.taken_usd == pytest.approx(0.0)
    budgets.close()
    assert spent_and_held(store) == (0.0, 0.0)


def test_interpreter_exit_settles_open_leases(tmp_path: Path) -> None:
    """A process that ends without closing its workspace still settles what its leases spent."""
    import subprocess
    import sys

    script = f"""
import asyncio
from pathlib import Path
from brickyard.models.budget import Budgets
from brickyard.models.calls import Caller, CallerBudget, EmbedCall
from brickyard.store import SQLiteStore

store = SQLiteStore(Path({str(tmp_path / "ledger.sqlite")!r}))
budgets = Budgets(store, [])
call = EmbedCall(texts=("x",), caller=Caller(key="k", budgets=(CallerBudget("key:k", 1.0, "day"),)))

async def main():
    for _ in range(3):
        held = await budgets.reserve(budgets.applying("e", call), 0.01)
        budgets.settle(held, 0.01)

asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    store = SQLiteStore(tmp_path / "ledger.sqlite")
    try:
        hold = Budgets(store, []).applying("e", call_with(CallerBudget("key:k", 1.0, "day")))[0].hold
        assert store.budget_state(hold) == (pytest.approx(0.03), 0.0)
    finally:
        store.close()


async def test_a_call_cancelled_while_a_lease_opens_does_not_fail_the_others(
    stores: Callable[[], CountingStore],
) -> None:
    store = stores()
    reserve = store.reserve

    def slow(holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        time.sleep(0.2)  # the store is slow to answer: every call below waits for the one lease being opened
        return reserve(holds, amount_usd, ttl_s=ttl_s)

    store.reserve = slow  # type: ignore[method-assign]
    budgets = budgets_on(store)
    tasks = [asyncio.create_task(budgets.reserve(budgets.applying("e", call_with(KEY)), CALL_USD)) for _ in range(4)]
    await asyncio.sleep(0.05)
    tasks[1].cancel()  # a waiter whose client left
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    kept = [d for i, d in enumerate(done) if i != 1]
    assert all(isinstance(d, Reservation) for d in kept), done
    for held in kept:
        budgets.settle(held, CALL_USD)  # type: ignore[arg-type]
    budgets.close()
    assert spent_and_held(store) == (pytest.approx(3 * CALL_USD), 0.0)


async def test_a_call_cancelled_while_its_job_cap_is_reserved_gives_back_what_its_lease_held(
    stores: Callable[[], CountingStore],
) -> None:
    store = stores()
    budgets = budgets_on(store)
    warm = await budgets.reserve(budgets.applying("e", call_with(KEY)), CALL_USD)  # the key's lease is open
    budgets.settle(warm, CALL_USD)
    reserve = store.reserve

    def slow(holds: Sequence[Hold], amount_usd: float, *, ttl_s: float) -> str | Refusal:
        time.sleep(0.2)
        return reserve(holds, amount_usd, ttl_s=ttl_s)

    store.reserve = slow  # type: ignore[method-assign]
    cap = CallerBudget("query:q", 1.0, "job", fix="raise --max-cost")
    task = asyncio.create_task(budgets.reserve(budgets.applying("e", call_with(KEY, cap)), CALL_USD))
    await asyncio.sleep(0.05)  # the key's lease took the call; the cap's reservation is in the store's hands
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    lease = next(iter(budgets.leases._current.values()))
    assert lease.in_flight == 0 and lease.taken_usd == pytest.approx(CALL_USD)  # only the settled call
    budgets.close()
