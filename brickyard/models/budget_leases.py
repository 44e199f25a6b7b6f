"""Budget leases: a process holds a slice of a long-lived budget in the store and reserves calls in memory.

Reserving every call in the store costs two store transactions per call (reserve, then settle), which was most
of a budgeted request's time in the gateway (BENCHMARKS §7). A lease is one reservation in the store worth
several calls; the calls of this process reserve against it in memory, and the lease is settled in the store
with the real cost of its calls once it is closed and its calls are over.

The budget's bound is unchanged: the store admits a lease only when spend plus everything held (other
processes' leases and reservations included) plus the lease fits under the limit, and a lease never lets its
calls take more than it holds (calls in flight count at their reservation, finished ones at their real cost).

A lease closes when it cannot fit the next call, when it is `lease_s` old, or when the workspace closes; its
unused part returns to the budget when it is settled. Its size adapts: `calls` calls' worth, doubled when a
lease fills up before its time and halved when one expires mostly unused; near the limit a lease shrinks to a
quarter of what is left, then to one call's worth (the exact path), so an idle process strands at most a
quarter of the remainder, for at most `lease_s`, before other processes can use it. Settled spend reaches the
store within about `lease_s` (a process killed with SIGKILL leaves that much spend uncounted in the budget
counters; the usage ledger is the record of what was spent).

Only budgets that live for a day or a month (endpoint, tag and key scopes) are leased; a job's cap (a query's
or a sweep's `--max-cost`) is reserved call by call, so what a job spent reads exactly.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from brickyard.store import _budget
from brickyard.store.base import Hold, Refusal, Store

LEASE_S = 1.0
"""A lease takes no new calls after this long; its unused part returns to the budget when its calls are over."""
FIRST_CALLS = 4
"""A first lease is worth this many calls at the first call's reservation."""
MAX_CALLS = 256
SHARE_OF_REST = 0.25
"""Near the limit, a lease holds at most this share of what is left of the budget (and at least one call)."""

_Pair = tuple[str, float]


def leasable(hold: Hold) -> bool:
    """Whether a budget is leased: the long-lived scopes (endpoint, tag, key), not a job's cap."""
    return _budget.ledger_filter(hold.scope) is not None


@dataclass
class Lease:
    """One reservation in the store that this process's calls reserve against in memory."""

    id: str
    hold: Hold
    granted_usd: float
    opened: float = field(default_factory=time.monotonic)
    taken_usd: float = 0.0
    """Calls in flight at their reservation plus finished calls at their real cost."""
    cost_usd: float = 0.0
    """The real cost of the finished calls: what the store's spend grows by when the lease is settled."""
    in_flight: int = 0
    calls: int = 0
    open: bool = True
    settled: bool = False

    def fits(self, amount_usd: float, now: float, lease_s: float) -> bool:
        return self.open and now - self.opened < lease_s and self.taken_usd + amount_usd <= self.granted_usd + 1e-12


class Leases:
    """This process's leases on the budgets of one store, one current lease per budget window."""

    def __init__(self, store: Store, *, ttl_s: float, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.lease_s = lease_s
        self._lock = threading.Lock()  # guards every field below and every lease's counters
        self._current: dict[_Pair, Lease] = {}
        self._calls: dict[_Pair, int] = {}
        self._opening: dict[_Pair, concurrent.futures.Future[None]] = {}
        self._to_settle: list[Lease] = []
        self._wake = threading.Condition(self._lock)
        self._sweeper: threading.Thread | None = None
        self._stopping = False
        self._exit_hook: Callable[[], None] | None = None  # registered while leases are open

    # -- calls ------------------------------------------------------------------------------------
    async def take(self, holds: Sequence[Hold], amount_usd: float) -> list[Lease] | Refusal:
        """Reserve `amount_usd` against the current lease of every hold (all or none), opening leases in the
        store as needed; a `Refusal` when the store cannot fit even one call's worth."""
        pairs = [_pair(h) for h in holds]
        while True:
            wait_for: concurrent.futures.Future[None] | None = None
            to_open: list[Hold] = []
            with self._lock:
                now = time.monotonic()
                missing = [h for h, p in zip(holds, pairs, strict=True) if not self._fits(p, amount_usd, now)]
                if not missing:
                    leases = [self._current[p] for p in pairs]
                    for lease in leases:
                        lease.taken_usd += amount_usd
                        lease.in_flight += 1
                        lease.calls += 1
                    return leases
                for hold in missing:
                    pending = self._opening.get(_pair(hold))
                    if pending is not None:
                        wait_for = pending
                        break
                else:
                    to_open = missing
                    for hold in to_open:
                        self._opening[_pair(hold)] = concurrent.futures.Future()
                        self._close(self._current.get(_pair(hold)), now)
            if wait_for is not None:  # another call is opening this budget's next lease: use it
                # shielded: a waiter cancelled (its client left) must not cancel the opening for the others
                await asyncio.shield(asyncio.wrap_future(wait_for))
                continue
            refusal = await asyncio.to_thread(self._open_all, to_open, amount_usd)
            if refusal is not None:
                return refusal

    def release(self, leases: Sequence[Lease], amount_usd: float, cost_usd: float) -> None:
        """A call is over: its reservation becomes its real cost in each lease it took."""
        with self._lock:
            for lease in leases:
                lease.taken_usd += cost_usd - amount_usd
                lease.cost_usd += cost_usd
                lease.in_flight -= 1
                if not lease.open and lease.in_flight == 0:
                    self._queue_settle(lease)

    def close(self) -> None:
        """Close every lease and settle it in the store (calls still in flight count at their cost so far);
        later calls open new leases."""
        with self._lock:
            now = time.monotonic()
            for lease in self._current.values():
                self._close(lease, now, force=True)
            self._current.clear()
            self._stopping = True
            self._wake.notify_all()
            sweeper, self._sweeper = self._sweeper, None
            hook, self._exit_hook = self._exit_hook, None
        if hook is not None:
            atexit.unregister(hook)
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join()
        with self._lock:
            self._stopping = False
        self._settle_queued()

    # -- leases -----------------------------------------------------------------------------------
    def _fits(self, pair: _Pair, amount_usd: float, now: float) -> bool:
        lease = self._current.get(pair)
        return lease is not None and lease.fits(amount_usd, now, self.lease_s)

    def _open_all(self, holds: list[Hold], amount_usd: float) -> Refusal | None:
        """Open a new lease for each hold (in a worker thread); wake the calls waiting for them."""
        refusal: Refusal | None = None
        try:
            self._settle_queued()  # what closing the old leases frees is back in the budget first
            for hold in holds:
                if refusal is None:
                    got = self._open(hold, amount_usd)
                    if isinstance(got, Refusal):
                        refusal = got
                    else:
                        with self._lock:
                            self._current[_pair(hold)] = got
                            self._start_sweeper()
        finally:
            with self._lock:
                for hold in holds:
                    pending = self._opening.pop(_pair(hold), None)
                    if pending is not None and not pending.done():
                        pending.set_result(None)
        return refusal

    def _open(self, hold: Hold, amount_usd: float) -> Lease | Refusal:
        """One reservation in the store: `calls` calls' worth, else a share of what is left, else one call."""
        with self._lock:
            calls = self._calls.get(_pair(hold), FIRST_CALLS)
        size = amount_usd * calls
        while True:
            got = self.store.reserve([hold], size, ttl_s=self.ttl_s)
            if isinstance(got, str):
                return Lease(got, hold, size)
            rest = hold.limit_usd - got.spent_usd - got.held_usd
            if size <= amount_usd or rest < amount_usd - _budget.EPS_USD:  # sums of floats: the store's slack
                return got
            size = max(amount_usd, min(size / 2, rest * SHARE_OF_REST))

    def _close(self, lease: Lease | None, now: float, *, force: bool = False) -> None:
        """No new calls on `lease` (holding the lock); settle it once its calls are over; adapt the next size."""
        if lease is None or not lease.open:
            return
        lease.open = False
        pair = _pair(lease.hold)
        calls = self._calls.get(pair, FIRST_CALLS)
        if now - lease.opened < self.lease_s and not force:
            self._calls[pair] = min(calls * 2, MAX_CALLS)  # filled up before its time: lease more
        elif lease.calls < calls / 2:
            self._calls[pair] = max(calls // 2, 1)
        if lease.in_flight == 0 or force:
            self._queue_settle(lease)

    def _queue_settle(self, lease: Lease) -> None:
        if not lease.settled:
            lease.settled = True
            self._to_settle.append(lease)
            self._wake.notify_all()

    def _settle_queued(self) -> None:
        with self._lock:
            leases, self._to_settle = self._to_settle, []
        for lease in leases:
            self.store.settle(lease.id, lease.cost_usd)

    def _start_sweeper(self) -> None:
        """The thread that closes leases past their time and settles closed ones (holding the lock)."""
        if self._sweeper is None or not self._sweeper.is_alive():
            self._sweeper = threading.Thread(target=self._sweep, name="brickyard-budget-leases", daemon=True)
            self._sweeper.start()
        if self._exit_hook is None:  # interpreter exit settles the leases (the hook leaves `self` collectable)
            self._exit_hook = _weak_close(self)
            atexit.register(self._exit_hook)

    def _sweep(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._wake.wait(timeout=self.lease_s / 2)
                now = time.monotonic()
                for pair, lease in list(self._current.items()):
                    if now - lease.opened >= self.lease_s:
                        self._close(lease, now)
                        del self._current[pair]
            self._settle_queued()


def _pair(hold: Hold) -> _Pair:
    return hold.scope, float(hold.window_start)


def _weak_close(leases: Leases) -> Callable[[], None]:
    """An exit hook that settles the leases if they are still alive (without keeping them alive)."""
    ref = weakref.ref(leases)

    def hook() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    return hook
