"""Provider batch APIs against the fake upstream's OpenAI Batch API and Anthropic Message Batches over real HTTP,
through the official SDKs: no row lost, none sent twice across crashes, per-row errors, expiry, deadlines,
the batch price in the ledger and budgets, and keys kept out of stored state and errors."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from brickyard._errors import BudgetExceededError, UserError
from brickyard.batch_api import BatchJobs, batch_price
from brickyard.models.budget import Price
from brickyard.store.base import Hold
from brickyard.testing.upstream import FakeUpstream
from brickyard.workspace import Workspace

OPENAI_KEY = "sk-test-batchsecret-7781"
ANTHROPIC_KEY = "sk-ant-batchsecret-9931"
ENV = {"FAKE_KEY": OPENAI_KEY, "FAKE_ANT_KEY": ANTHROPIC_KEY}
REPO = Path(__file__).resolve().parents[1]


def config(up: FakeUpstream, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        [endpoints.gpt]
        model = "openai:fake-gpt"
        base_url = "{up.base_url}"
        api_key_env = "FAKE_KEY"
        price_input_per_1m = 1.0
        price_output_per_1m = 4.0
        max_retries = 0
        options = {{ batch_api = "openai" }}

        [endpoints.compat]
        model = "openai:fake-gpt"
        base_url = "{up.base_url}"

        [endpoints.claude]
        model = "anthropic:claude-fake"
        base_url = "http://127.0.0.1:{up.port}"
        api_key_env = "FAKE_ANT_KEY"
        price_input_per_1m = 3.0
        price_output_per_1m = 15.0
        batch_price_input_per_1m = 1.0
        batch_price_output_per_1m = 5.0
        """
    ) + textwrap.dedent(extra)


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def make_ws(path: Path, up: FakeUpstream, extra: str = "") -> Workspace:
    path.mkdir(parents=True, exist_ok=True)
    (path / "brickyard.toml").write_text(config(up, extra), encoding="utf-8")
    return Workspace(path, env=ENV)


@pytest_asyncio.fixture
async def ws(tmp_path: Path, up: FakeUpstream) -> AsyncIterator[Workspace]:
    workspace = make_ws(tmp_path / "ws", up)
    yield workspace
    await workspace.aclose()  # on the test's loop: the models' HTTP clients belong to it


def prompts(n: int, *, fail_every: int = 0) -> list[str]:
    return [f"row {i}" + (" [fail:400]" if fail_every and i % fail_every == 3 else "") for i in range(n)]


def batch_usage(ws: Workspace) -> list[Any]:
    return [r for r in ws.store.usage() if r.extra.get("batch")]


def direct_bodies(up: FakeUpstream) -> list[str]:
    """The user text of every direct chat call the upstream received (batch rows are not in here)."""
    return [m["content"] for b in up.received_bodies for m in b.get("messages", []) if m.get("role") == "user"]


# -- volume, per-row errors, price ---------------------------------------------------------------------------


async def test_ten_thousand_rows_none_lost_errors_kept_per_row_at_the_batch_price(
    ws: Workspace, up: FakeUpstream
) -> None:
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = prompts(10_000, fail_every=100)
    job = await jobs.submit("gpt", rows, chunk_size=3_000, tag="nightly")
    status = await jobs.run(job)

    results = jobs.results(job)
    assert status.status == "done" and len(results) == 10_000
    assert [r.row for r in results] == list(range(10_000))
    for prompt, r in zip(rows, results, strict=True):
        if "[fail:400]" in prompt:
            assert r.state == "error" and r.error and "400" in r.error and r.text is None
        else:
            assert r.state == "ok" and r.text == f"echo: {prompt}" and r.error is None
    assert status.counts == {"pending": 0, "ok": 9_900, "error": 100, "unfinished": 0}
    # each row reached the batch API exactly once, in 4 provider batches; none went directly
    assert len(up.batches.sent) == 10_000 and set(up.batches.sent.values()) == {1}
    assert len(up.batches.created) == 4 and direct_bodies(up) == []
    # the ledger: one record per row, flagged as a batch call, priced at half the interactive price
    usage = batch_usage(ws)
    assert len(usage) == 10_000 and all(u.endpoint == "gpt" and u.tag == "nightly" for u in usage)
    assert sum(u.status == "error" for u in usage) == 100
    half = Price(0.5, 2.0)
    for u in usage:
        assert u.cost_usd == pytest.approx(_cost(half, u))
    total = sum(u.cost_usd for u in usage)
    assert total > 0 and status.batch_cost_usd == pytest.approx(total)
    assert status.interactive_cost_usd == pytest.approx(2 * total)


def _cost(price: Price, record: Any) -> float:
    return (record.input_tokens * price.input_per_1m + record.output_tokens * price.output_per_1m) / 1e6


async def test_anthropic_message_batches_keep_errors_per_row_at_the_configured_batch_price(
    ws: Workspace, up: FakeUpstream
) -> None:
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = prompts(1_200, fail_every=50)
    job = await jobs.submit("claude", rows, chunk_size=500)
    status = await jobs.run(job)
    results = jobs.results(job)
    assert status.status == "done" and status.provider == "anthropic"
    assert sum(r.state == "error" for r in results) == 24
    assert all(r.text == f"echo: {p}" for p, r in zip(rows, results, strict=True) if r.state == "ok")
    assert all("injected" in (r.error or "") for r in results if r.state == "error")
    assert set(up.batches.sent.values()) == {1} and len(up.batches.created) == 3
    usage = batch_usage(ws)
    assert len(usage) == 1_200
    for u in usage:  # brickyard.toml sets the batch price (1 and 5), not half of 3 and 15
        assert u.cost_usd == pytest.approx(_cost(Price(1.0, 5.0), u))
    assert batch_price(ws.registry, "claude") == (Price(1.0, 5.0), Price(3.0, 15.0))


async def test_structured_output_rows_come_back_parsed(ws: Workspace, up: FakeUpstream) -> None:
    from brickyard.models._types import ChatRequest

    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    requests = [ChatRequest.from_prompt(f"item {i}", json_schema=schema, max_tokens=20) for i in range(30)]
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("gpt", requests)
    await jobs.run(job)
    assert [r.json for r in jobs.results(job)] == [{"echo": f"item {i}"} for i in range(30)]


async def test_partial_results_are_readable_while_the_job_runs(ws: Workspace, up: FakeUpstream) -> None:
    up.batches.rows_per_poll = 60  # chunk 0 (100 rows) needs two status reads, chunk 1 (50 rows) one
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("gpt", prompts(150), chunk_size=100)
    status = await jobs.run(job, wait=False)
    assert status.status == "running" and status.counts == {"pending": 100, "ok": 50, "error": 0, "unfinished": 0}
    results = jobs.results(job)
    assert [r.state for r in results] == ["pending"] * 100 + ["ok"] * 50
    assert all(r.text is None and r.error is None for r in results[:100])
    assert (await jobs.run(job)).status == "done" and set(up.batches.sent.values()) == {1}


# -- crashes and resume --------------------------------------------------------------------------------------


class Crash(Exception):
    """Stands for the process dying at a hook point."""


@pytest.mark.parametrize("endpoint", ["gpt", "claude"])
async def test_a_crash_between_provider_accept_and_record_resumes_without_sending_a_row_twice(
    tmp_path: Path, up: FakeUpstream, endpoint: str
) -> None:
    def crash(event: str, details: dict[str, Any]) -> None:
        if event == "after_create" and details["chunk"] == 1:
            raise Crash

    ws1 = make_ws(tmp_path / "ws", up)
    jobs = BatchJobs(ws1, poll_s=0.01, hook=crash)
    job = await jobs.submit(endpoint, prompts(2_500), chunk_size=1_000)
    with pytest.raises(Crash):
        await jobs.run(job)
    assert [c[1] for c in jobs.status(job).chunks] == ["submitted", "submitting", "new"]
    await ws1.aclose()

    ws2 = make_ws(tmp_path / "ws", up)  # a restart: a new workspace object on the same folder
    status = await BatchJobs(ws2, poll_s=0.01).run(job)
    assert status.status == "done" and status.counts["ok"] == 2_500
    assert len(up.batches.sent) == 2_500 and set(up.batches.sent.values()) == {1}
    assert len(up.batches.created) == 3  # chunk 1's batch was adopted, not created again
    assert len(batch_usage(ws2)) == 2_500
    await ws2.aclose()


async def test_a_crash_after_collecting_a_chunk_meters_each_row_once(tmp_path: Path, up: FakeUpstream) -> None:
    def crash(event: str, details: dict[str, Any]) -> None:
        if event == "collected" and details["chunk"] == 0:
            raise Crash

    ws1 = make_ws(tmp_path / "ws", up)
    jobs = BatchJobs(ws1, poll_s=0.01, hook=crash)
    job = await jobs.submit("gpt", prompts(600), chunk_size=300)
    with pytest.raises(Crash):
        await jobs.run(job)
    partial = jobs.results(job)
    assert sum(r.state == "ok" for r in partial) == 300  # readable before the job is done
    await ws1.aclose()
    ws2 = make_ws(tmp_path / "ws", up)
    status = await BatchJobs(ws2, poll_s=0.01).run(job)
    assert status.counts["ok"] == 600
    assert len(batch_usage(ws2)) == 600 and set(up.batches.sent.values()) == {1}
    await ws2.aclose()


def test_a_killed_process_resumes_without_sending_a_row_twice(tmp_path: Path, up: FakeUpstream) -> None:
    """The runner's process is killed (os._exit) right after the provider accepted a chunk."""
    folder = tmp_path / "ws"
    make_ws(folder, up)
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from brickyard.batch_api import BatchJobs
        from brickyard.workspace import Workspace

        def die(event, details):
            if event == "after_create" and details["chunk"] == 1:
                print(details["job"], flush=True)
                os._exit(9)

        async def main():
            ws = Workspace({str(folder)!r}, env={ENV!r})
            jobs = BatchJobs(ws, poll_s=0.01, hook=die)
            job = await jobs.submit("gpt", [f"row {{i}}" for i in range(3000)], chunk_size=1000)
            await jobs.run(job)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 9, proc.stderr
    job = proc.stdout.strip()
    assert len(up.batches.created) == 2

    ws = Workspace(folder, env=ENV)
    status = asyncio.run(BatchJobs(ws, poll_s=0.01).run(job))
    assert status.status == "done" and status.counts["ok"] == 3_000
    assert len(up.batches.sent) == 3_000 and set(up.batches.sent.values()) == {1}
    assert len(up.batches.created) == 3
    asyncio.run(ws.aclose())


async def test_two_runners_on_one_job_one_is_refused_and_no_row_is_sent_twice(ws: Workspace, up: FakeUpstream) -> None:
    up.batches.rows_per_poll = 200  # slow enough that the runs overlap
    first, second = BatchJobs(ws, poll_s=0.01), BatchJobs(ws, poll_s=0.01)
    job = await first.submit("gpt", prompts(1_000), chunk_size=250)
    outcomes = await asyncio.gather(first.run(job), second.run(job), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, UserError)]
    assert len(refused) == 1 and "being run by another process" in str(refused[0]) and "Fix:" in str(refused[0])
    assert first.status(job).status == "done"
    assert len(up.batches.sent) == 1_000 and set(up.batches.sent.values()) == {1} and len(up.batches.created) == 4
    # the lease is released when a run ends: a later run is not refused
    assert (await second.run(job)).status == "done"


# -- expiry, failure, deadline -------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["gpt", "claude"])
async def test_an_expired_batch_falls_back_to_direct_calls_for_the_rows_left(
    ws: Workspace, up: FakeUpstream, endpoint: str
) -> None:
    up.batches.expire_after = 120
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = prompts(400)
    job = await jobs.submit(endpoint, rows)
    status = await jobs.run(job)
    results = jobs.results(job)
    assert status.status == "done" and all(r.state == "ok" for r in results)
    assert [r.text for r in results] == [f"echo: {p}" for p in rows]
    assert [r.via for r in results] == ["batch"] * 120 + ["direct"] * 280
    assert set(up.batches.sent.values()) == {1}
    # the direct calls reached the upstream once each, for the expired rows only
    sent_directly = direct_bodies(up) if endpoint == "gpt" else up.batches.direct_messages
    assert sorted(sent_directly) == sorted(rows[120:])
    batch_records = batch_usage(ws)
    direct = [u for u in ws.store.usage() if not u.extra.get("batch")]
    assert len(batch_records) == 120 and len(direct) == 280  # direct calls metered by the normal stack
    assert status.direct_cost_usd > 0


async def test_an_expired_batch_with_partial_policy_is_a_clear_partial_result(ws: Workspace, up: FakeUpstream) -> None:
    up.batches.expire_after = 50
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("gpt", prompts(200), on_deadline="partial")
    status = await jobs.run(job)
    assert status.status == "partial" and status.counts == {"pending": 0, "ok": 50, "error": 0, "unfinished": 150}
    assert status.note and "150 rows unfinished" in status.note
    unfinished = [r for r in jobs.results(job) if r.state == "unfinished"]
    assert all(r.text is None and r.error and "expired" in r.error for r in unfinished)
    assert direct_bodies(up) == []


async def test_a_failed_batch_sends_its_rows_directly(ws: Workspace, up: FakeUpstream) -> None:
    up.batches.fail_validation = True
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("gpt", prompts(50))
    status = await jobs.run(job)
    assert status.status == "done" and {r.via for r in jobs.results(job)} == {"direct"}
    assert len(direct_bodies(up)) == 50


@pytest.mark.parametrize(("endpoint", "cancelled"), [("gpt", "cancelled"), ("claude", "ended")])
async def test_the_deadline_cancels_the_batch_and_sends_the_rest_directly_once(
    ws: Workspace, up: FakeUpstream, endpoint: str, cancelled: str
) -> None:
    up.batches.rows_per_poll = 40  # a slow provider: 40 rows per status read
    jobs = BatchJobs(ws, poll_s=0.05)
    rows = prompts(1_000)
    job = await jobs.submit(endpoint, rows, deadline_s=0.4)
    status = await jobs.run(job)
    results = jobs.results(job)
    by_batch = [r for r in results if r.via == "batch"]
    by_direct = [r for r in results if r.via == "direct"]
    assert status.status == "done" and len(by_batch) + len(by_direct) == 1_000
    assert 0 < len(by_batch) < 1_000
    assert [c[3] for c in status.chunks] == [cancelled]
    # a row answered by the batch was not also sent directly, and every row has its own answer
    sent_directly = direct_bodies(up) if endpoint == "gpt" else up.batches.direct_messages
    assert sorted(sent_directly) == sorted(rows[r.row] for r in by_direct)
    assert [r.text for r in results] == [f"echo: {p}" for p in rows]


@pytest.mark.parametrize("endpoint", ["gpt", "claude"])
async def test_transient_errors_reading_a_batch_do_not_stop_the_run(
    ws: Workspace, up: FakeUpstream, endpoint: str
) -> None:
    up.batches.fail_reads = 3
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit(endpoint, prompts(30))
    if endpoint == "gpt":  # without waiting, the error is the caller's (gpt has max_retries = 0)
        with pytest.raises(Exception, match="overloaded"):
            await jobs.run(job, wait=False)
    status = await jobs.run(job)
    assert status.status == "done" and status.counts["ok"] == 30 and up.batches.fail_reads == 0
    assert set(up.batches.sent.values()) == {1}


async def test_chunks_are_split_by_bytes_as_well_as_rows(ws: Workspace, up: FakeUpstream, monkeypatch: Any) -> None:
    from brickyard.batch_api._providers import OpenAIBatches

    monkeypatch.setattr(OpenAIBatches, "max_bytes", 20_000)
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = [f"{i} " + "x" * 1_000 for i in range(100)]  # about 1.3 kB a row as stored
    job = await jobs.submit("gpt", rows)
    status = await jobs.run(job)
    assert status.counts["ok"] == 100 and len(up.batches.created) >= 6 and len(status.chunks) == len(up.batches.created)
    with pytest.raises(UserError, match="over one provider batch"):
        await jobs.submit("gpt", ["y" * 30_000])


async def test_a_hostile_output_file_loses_no_row_and_overwrites_no_answer(ws: Workspace, up: FakeUpstream) -> None:
    up.batches.hostile_output = True
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = prompts(50)
    job = await jobs.submit("gpt", rows)
    status = await jobs.run(job)
    results = jobs.results(job)
    assert status.status == "done" and [r.text for r in results] == [f"echo: {p}" for p in rows]  # not "tampered"
    assert [r.via for r in results] == ["direct"] + ["batch"] * 49  # the row missing from the file went directly
    assert direct_bodies(up) == [rows[0]]
    assert len(batch_usage(ws)) == 49  # the repeated and the foreign lines are not metered


async def test_an_unreadable_output_file_is_not_a_reason_to_send_the_rows_to_the_batch_api_again(
    ws: Workspace, up: FakeUpstream
) -> None:
    up.batches.garble_output = True
    jobs = BatchJobs(ws, poll_s=0.01)
    rows = prompts(40)
    job = await jobs.submit("gpt", rows)
    status = await jobs.run(job)
    assert status.status == "done" and {r.via for r in jobs.results(job)} == {"direct"}
    assert len(up.batches.created) == 1 and set(up.batches.sent.values()) == {1}
    assert sorted(direct_bodies(up)) == sorted(rows)


async def test_an_anthropic_batch_adopted_on_resume_that_was_not_ours_is_dropped(
    ws: Workspace, up: FakeUpstream
) -> None:
    import anthropic

    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("claude", prompts(30))
    ws.batch_jobs.mark_submitting(job, 0)  # a crash right after this, before the provider heard of the chunk
    foreign = anthropic.Anthropic(base_url=f"http://127.0.0.1:{up.port}", api_key="sk-ant-other", max_retries=0)
    params = {"model": "claude-fake", "max_tokens": 5, "messages": [{"role": "user", "content": "theirs"}]}
    theirs = foreign.messages.batches.create(requests=[{"custom_id": f"t{i}", "params": params} for i in range(30)])
    status = await jobs.run(job)  # adopts the same-size batch created since, then sees it is not this chunk's
    assert status.status == "done" and {r.via for r in jobs.results(job)} == {"batch"}
    assert [r.text for r in jobs.results(job)] == [f"echo: {p}" for p in prompts(30)]
    assert len(up.batches.created) == 2 and set(up.batches.sent.values()) == {1}
    assert [c[2] for c in status.chunks] != [theirs.id]


# -- budgets -------------------------------------------------------------------------------------------------


async def test_a_budget_refuses_an_oversized_job_before_anything_is_sent(tmp_path: Path, up: FakeUpstream) -> None:
    ws = make_ws(tmp_path / "ws", up, '\n[[budgets]]\nendpoint = "gpt"\nlimit_usd = 0.05\nwindow = "day"\n')
    jobs = BatchJobs(ws, poll_s=0.01)
    from brickyard.models._types import ChatRequest

    big = [ChatRequest.from_prompt(f"row {i}", max_tokens=1_000) for i in range(100)]  # 100 x 1000 x 2 USD/1M = 0.2
    with pytest.raises(BudgetExceededError) as caught:
        await jobs.submit("gpt", big)
    assert "endpoint gpt" in str(caught.value) and "Fix:" in str(caught.value)
    assert up.requests == 0 and ws.batch_jobs.jobs() == []
    # a job that fits is held at its worst case while it runs, then charged what it cost
    small = big[:20]  # 20 x 1000 x 2 USD/1M = 0.04 worst case
    job = await jobs.submit("gpt", small)
    hold = Hold("endpoint:gpt", 0.05, ws.registry.budgets.applying("gpt", _call(small[0]))[0].hold.window_start)
    assert ws.store.budget_state(hold)[1] == pytest.approx(0.04, rel=0.01)
    status = await jobs.run(job)
    spent, held = ws.store.budget_state(hold)
    assert held == 0 and spent == pytest.approx(status.batch_cost_usd) and spent > 0
    await ws.aclose()


def _call(request: Any) -> Any:
    from brickyard.models.calls import ChatCall

    return ChatCall(request)


async def test_a_job_cost_cap_refuses_before_anything_is_sent(ws: Workspace, up: FakeUpstream) -> None:
    from brickyard.models._types import ChatRequest

    with pytest.raises(BudgetExceededError, match="max_cost_usd"):
        await BatchJobs(ws).submit("gpt", [ChatRequest.from_prompt("x", max_tokens=10_000)] * 10, max_cost_usd=0.01)
    assert up.requests == 0


# -- refusals and secrets ------------------------------------------------------------------------------------


def test_endpoints_without_a_batch_api_get_a_clear_error(ws: Workspace) -> None:
    jobs = BatchJobs(ws)
    with pytest.raises(UserError) as local:
        asyncio.run(jobs.submit("smollm2", ["hi"]))
    message = str(local.value)
    assert "smollm2" in message and "openai" in message and "anthropic" in message and "Fix:" in message
    with pytest.raises(UserError, match="batch_api"):
        asyncio.run(jobs.submit("compat", ["hi"]))
    with pytest.raises(UserError, match="empty prompt"):
        asyncio.run(jobs.submit("gpt", ["ok", "   "]))
    for bad in ({"deadline_s": 0}, {"deadline_s": float("nan")}, {"max_cost_usd": -1.0}, {"on_deadline": "later"}):
        with pytest.raises(UserError, match=next(iter(bad))):
            asyncio.run(jobs.submit("gpt", ["ok"], **bad))
    with pytest.raises(UserError, match="at least one row"):
        asyncio.run(jobs.submit("gpt", []))
    assert ws.batch_jobs.jobs() == []


def test_the_fake_batch_apis_refuse_what_the_real_ones_refuse(up: FakeUpstream) -> None:
    import openai

    client = openai.OpenAI(base_url=up.base_url, api_key="sk-test-1234", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    uploaded = client.files.create(file=("a.jsonl", b""), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="1h")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="No such File"):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


async def test_keys_never_reach_stored_state_or_errors(ws: Workspace, up: FakeUpstream) -> None:
    jobs = BatchJobs(ws, poll_s=0.01)
    job = await jobs.submit("gpt", prompts(20))
    await jobs.run(job)
    job2 = await jobs.submit("claude", prompts(20))
    await jobs.run(job2)
    # a provider that refuses the key: the error names the setting, never the key
    up.scenario = None
    original = up.batches.dispatch

    def refuse(method: str, route: str, headers: dict[str, str], raw: bytes) -> Any:
        from brickyard.testing.upstream import _bad_key

        return _bad_key(headers)

    up.batches.dispatch = refuse  # type: ignore[method-assign]
    job3 = await jobs.submit("gpt", prompts(5))
    with pytest.raises(Exception) as caught:
        await jobs.run(job3)
    up.batches.dispatch = original  # type: ignore[method-assign]
    assert "401" in str(caught.value) or "refused" in str(caught.value)
    assert OPENAI_KEY not in str(caught.value) and OPENAI_KEY[-4:] + "." not in str(caught.value)
    ws.store.flush()
    for file in ws.path.rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            assert OPENAI_KEY.encode() not in data and ANTHROPIC_KEY.encode() not in data, file.name


# -- surfaces ------------------------------------------------------------------------------------------------


def test_sql_ai_query_with_batch_goes_through_a_batch_job(ws: Workspace, up: FakeUpstream) -> None:
    from brickyard.sql.duckdb import connect

    with connect(ws, database=":memory:") as con:
        con.execute("CREATE TABLE t AS SELECT 'line ' || i AS txt FROM range(300) r(i)")
        con.execute("INSERT INTO t VALUES (NULL)")
        got = con.execute(
            "SELECT txt, ai_query('gpt', txt, modelParameters => {'batch': true, 'max_tokens': 20}) FROM t ORDER BY txt"
        ).fetchall()
        with pytest.raises(Exception, match="has no batch API") as caught:
            con.execute("SELECT ai_query('smollm2', 'x', modelParameters => {'batch': true})").fetchall()
        assert "anthropic" in str(caught.value)
    answers = {txt: answer for txt, answer in got}
    assert answers[None] is None and len(answers) == 301
    assert all(answer == f"echo: {txt}" for txt, answer in answers.items() if txt is not None)
    assert len(up.batches.created) == 1 and len(up.batches.sent) == 300 and direct_bodies(up) == []
    assert len(batch_usage(ws)) == 300 and {u.tag for u in batch_usage(ws)} == {"sql"}


def test_sql_batch_mode_sends_every_ai_function_through_batch_jobs_with_the_interactive_answers(
    tmp_path: Path, up: FakeUpstream
) -> None:
    """`brickyard sql --batch` (the binding's `batch`): the same statement answers the same as interactively."""
    from brickyard.sql.duckdb import connect

    query = (
        "SELECT txt, ai_summarize(txt, 10, endpoint => 'gpt') AS s, ai_translate(txt, 'fr', endpoint => 'gpt') AS t,"
        " ai_query('gpt', txt) AS q FROM t ORDER BY txt"
    )
    answers = {}
    for mode in ("interactive", "batch"):
        ws = make_ws(tmp_path / mode, up)
        with connect(ws, database=":memory:") as con:
            con.brickyard.batch = mode == "batch"
            con.execute("CREATE TABLE t AS SELECT 'note ' || i AS txt FROM range(60) r(i)")
            answers[mode] = con.execute(query).fetchall()
        if mode == "interactive":
            assert len(direct_bodies(up)) == 180 and up.batches.sent == {}
            up.reset()
        else:
            assert direct_bodies(up) == [] and len(up.batches.created) == 3 and len(up.batches.sent) == 180
            assert set(up.batches.sent.values()) == {1} and len(batch_usage(ws)) == 180
    assert answers["batch"] == answers["interactive"] and all(all(row) for row in answers["batch"])


def test_sql_batch_mode_respects_the_query_cost_cap_before_sending(ws: Workspace, up: FakeUpstream) -> None:
    from brickyard.sql.duckdb import connect

    with connect(ws, database=":memory:", max_cost_usd=0.001) as con:
        con.brickyard.batch = True
        con.execute("CREATE TABLE t AS SELECT 'note ' || i AS txt FROM range(50) r(i)")
        with pytest.raises(Exception, match="max-cost") as caught:
            con.execute("SELECT ai_summarize(txt, 10, endpoint => 'gpt') FROM t").fetchall()
    assert "Fix:" in str(caught.value) and up.requests == 0 and up.batches.sent == {}


def test_sql_rerun_after_a_crash_resumes_the_same_job(ws: Workspace, up: FakeUpstream) -> None:
    from brickyard.models._types import ChatRequest
    from brickyard.sql.duckdb import connect

    texts = [f"line {i}" for i in range(40)]

    def crash(event: str, details: dict[str, Any]) -> None:
        if event == "after_create":
            raise Crash

    # the query's job, as `ai_query(..., {'batch': true, 'max_tokens': 20})` submits it, dies after the provider
    # accepted it (the state a Ctrl-C or a crash of `brickyard sql --batch` leaves)
    requests = [ChatRequest.from_prompt(t, tag="sql", max_tokens=20) for t in texts]
    jobs = BatchJobs(ws, poll_s=0.01, hook=crash)
    job = asyncio.run(jobs.submit("gpt", requests, tag="sql", reuse=True))
    with pytest.raises(Crash):
        asyncio.run(jobs.run(job))
    query = "SELECT txt, ai_query('gpt', txt, modelParameters => {'batch': true, 'max_tokens': 20}) FROM t"
    for _ in range(2):  # re-run twice: the first resumes the job, the second reads it
        with connect(ws, database=":memory:") as con:
            con.execute("CREATE TABLE t AS SELECT 'line ' || i AS txt FROM range(40) r(i)")
            got = dict(con.execute(query).fetchall())
        assert got == {t: f"echo: {t}" for t in texts}
    assert len(up.batches.created) == 1 and set(up.batches.sent.values()) == {1} and len(up.batches.sent) == 40
    assert len(ws.batch_jobs.jobs()) == 1 and len(batch_usage(ws)) == 40


def test_cli_batch_list_status_results(ws: Workspace, up: FakeUpstream) -> None:
    jobs = BatchJobs(ws, poll_s=0.01)
    job = asyncio.run(jobs.submit("gpt", prompts(25, fail_every=10)))
    asyncio.run(jobs.run(job))
    asyncio.run(ws.aclose())
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    base = [str(Path(sys.executable).parent / "brickyard")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args, "-w", str(ws.path)], capture_output=True, text=True, env=env, timeout=120)

    listed = run("batch", "list")
    assert listed.returncode == 0 and job in listed.stdout and "done" in listed.stdout
    status = run("batch", "status", job)
    assert status.returncode == 0 and "22 ok, 3 errors" in status.stdout
    results = run("batch", "results", job)
    import json

    lines = [json.loads(line) for line in results.stdout.splitlines()]
    assert len(lines) == 25 and sum(line["state"] == "error" for line in lines) == 3
    missing = run("batch", "status", "nope")
    assert missing.returncode != 0 and "no batch job `nope`" in missing.stderr and "Traceback" not in missing.stderr
    # `brickyard sql --batch`: every ai_query through a batch job; a local endpoint gets the one-line error
    sent_before = len(up.batches.sent)
    answered = run("sql", "--batch", "SELECT ai_query('gpt', 'from the cli') AS a")
    assert answered.returncode == 0 and "echo: from the cli" in answered.stdout, answered.stderr
    assert len(up.batches.sent) == sent_before + 1 and direct_bodies(up) == []
    local = run("sql", "--batch", "SELECT ai_query('smollm2', 'x')")
    assert local.returncode != 0 and "Traceback" not in local.stderr
    assert "has no batch API" in local.stderr and "openai" in local.stderr and "anthropic" in local.stderr
    # `--estimate --batch`: the batch price (half here), and the run's refusal for an endpoint without one
    query = "SELECT ai_query('gpt', 'an estimate of a long enough request', modelParameters => {'max_tokens': 100})"
    interactive, batched = run("sql", "--estimate", query), run("sql", "--estimate", "--batch", query)
    assert interactive.returncode == 0 and batched.returncode == 0, batched.stderr
    usd = [float(r.stdout.split("tokens, ")[1].split(" USD")[0]) for r in (interactive, batched)]
    assert usd[0] > 0 and abs(usd[1] - usd[0] / 2) < 1e-4 and "at the batch price" in batched.stdout
    refused = run("sql", "--estimate", "--batch", "SELECT ai_query('smollm2', 'x')")
    assert refused.returncode != 0 and "has no batch API" in refused.stderr and "Traceback" not in refused.stderr
