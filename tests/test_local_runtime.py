"""The local runtime on a shared machine: greedy answers that do not depend on batch neighbours, and engines
of several processes that take turns (a host lease) instead of fighting over the cores."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from brickyard.models._types import ChatRequest
from brickyard.models.host_lease import HostLease
from brickyard.models.local import LocalModel


class _CountingServer:
    """Stands in for llama.cpp's server: records how many requests it decodes at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def handle_chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.02)
        with self.lock:
            self.inside -= 1
        return {
            "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }


@pytest.mark.parametrize("deterministic", [True, False])
async def test_deterministic_engine_decodes_one_request_at_a_time(tmp_path: Path, deterministic: bool) -> None:
    import asyncio

    model = LocalModel(tmp_path / "m.gguf", parallel=4, deterministic=deterministic, lease=HostLease(tmp_path))
    server = _CountingServer()
    model._server = server
    request = ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    answers = await asyncio.gather(*[model.complete(request.model_copy()) for _ in range(16)])
    assert [a.text for a in answers] == ["ok"] * 16
    assert server.most == 1 if deterministic else server.most > 1
    await model.aclose()


def _take_turns(folder: str, log: str, name: str, turns: int, started: Any) -> None:
    lease = HostLease(Path(folder))
    started.wait()
    for _ in range(turns):
        with lease.turn():
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{name} in {time.monotonic():.6f}\n")
            time.sleep(0.01)  # decoding
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{name} out {time.monotonic():.6f}\n")
    lease.close()


def test_two_processes_take_turns_without_overlap_and_neither_starves(tmp_path: Path) -> None:
    log = tmp_path / "turns.log"
    context = multiprocessing.get_context("spawn")
    started = context.Event()
    workers = [context.Process(target=_take_turns, args=(str(tmp_path), str(log), name, 40, started)) for name in "ab"]
    for worker in workers:
        worker.start()
    started.set()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    events = [line.split() for line in log.read_text(encoding="utf-8").splitlines()]
    holder = None
    for name, what, _ in events:  # strictly alternating in/out: never two holders at once
        if what == "in":
            assert holder is None, "two processes decoded at once"
            holder = name
        else:
            assert holder == name
            holder = None
    order = [name for name, what, _ in events if what == "in"]
    assert order.count("a") == order.count("b") == 40
    # fair: the lease changes hands all along, not once after one process has finished everything
    switches = sum(x != y for x, y in itertools.pairwise(order))
    assert switches >= 20, order


async def test_many_calls_of_one_process_share_the_turn(tmp_path: Path) -> None:
    """Without a neighbour, the parallel calls of one process decode together under one lease."""
    import asyncio

    lease = HostLease(tmp_path)
    inside = 0
    most = 0

    def call() -> None:
        nonlocal inside, most
        with lease.turn():
            inside += 1
            most = max(most, inside)
            time.sleep(0.02)
            inside -= 1

    await asyncio.gather(*[asyncio.to_thread(call) for _ in range(4)])
    assert most > 1
    lease.close()
