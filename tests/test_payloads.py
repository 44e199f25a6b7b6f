"""Payload logs: every call's request and response, keys never written, masked when the endpoint masks."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from brickyard import (
    ChatRequest,
    ChatResult,
    GuardrailError,
    MalformedResponseError,
    ProviderError,
    ServerError,
    Workspace,
)
from brickyard.config import EndpointConfig, GuardrailsConfig, PayloadsConfig, PiiAction
from brickyard.models.base import Model
from brickyard.models.calls import Caller
from brickyard.models.testing import FakeModel, FunctionModel
from brickyard.sql.duckdb import connect
from brickyard.store.payloads import PLACEHOLDER, PayloadLog

GATEWAY_KEY_BODY = "OISi4vQ1pZxk2N8mT0aLwE7c"  # the shape `brickyard keys create` issues, after `bky-`
FAKE_KEY = "plainvalue-7Hq2ZpL0vW"  # not shaped like any known key: only the explicit scrub can remove it


def _records(ws: Workspace) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(ws.payloads_dir.glob("*.jsonl")):
        lines.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    return sorted(lines, key=lambda r: r["ts"])


def _all_bytes(ws: Workspace) -> bytes:
    return b"".join(p.read_bytes() for p in ws.payloads_dir.iterdir())


def test_a_call_is_logged_with_key_endpoint_request_and_response(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register(
        "echo", FunctionModel(lambda r: f"echo: {r.messages[-1]['content']}"), EndpointConfig(model="x:e")
    )
    request = ChatRequest.from_prompt("hello", temperature=0.2, tag="t1")
    asyncio.run(ws.registry.get("echo").complete(request, caller=Caller(key="team-a")))
    [rec] = _records(ws)
    assert rec["endpoint"] == "echo" and rec["served_by"] == "echo" and rec["key"] == "team-a"
    assert (rec["status"], rec["kind"], rec["tag"]) == ("ok", "chat", "t1")
    assert rec["request"] == [{"role": "user", "content": "hello"}]
    assert rec["params"] == {"temperature": 0.2}
    assert rec["response_text"] == "echo: hello"
    assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0 and rec["latency_s"] >= 0
    assert rec["truncated"] is False


def test_failures_are_logged_once_per_call_even_with_fallbacks(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("backup", FakeModel(["from backup"]), EndpointConfig(model="x:b"))
    config = EndpointConfig(model="x:p", fallbacks=["backup"], max_retries=0)
    ws.registry.register("primary", FakeModel([ServerError("down", status=503)]), config)
    ws.registry.register("broken", FakeModel([ProviderError("no", status=400)]), EndpointConfig(model="x:x"))
    k1 = Caller(key="k1")
    asyncio.run(ws.registry.get("primary").complete(ChatRequest.from_prompt("q"), caller=k1))
    with pytest.raises(ProviderError):
        asyncio.run(ws.registry.get("broken").complete(ChatRequest.from_prompt("q"), caller=k1))
    ok, failed = _records(ws)
    assert (ok["endpoint"], ok["served_by"], ok["status"], ok["response_text"]) == (
        "primary",
        "backup",
        "ok",
        "from backup",
    )
    assert (failed["endpoint"], failed["status"], failed["error_type"]) == ("broken", "error", "ProviderError")
    # usage, by contrast, has one record per endpoint that was tried, each charged to the key
    assert [(u.endpoint, u.status, u.key) for u in ws.store.usage()] == [
        ("primary", "error", "k1"),
        ("backup", "ok", "k1"),
        ("broken", "error", "k1"),
    ]


def test_keys_and_authorization_never_reach_the_logs(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws = Workspace(ws.path, env={"MY_UPSTREAM_KEY": FAKE_KEY})

    def answer(request: ChatRequest) -> str:
        if "fail" in request.prompt_text():
            raise ProviderError(f"upstream refused key {FAKE_KEY} (Authorization: Bearer {FAKE_KEY})", status=401)
        return f"your key was {FAKE_KEY}; also sk-proj-abcdefghijklmnop and bky-{GATEWAY_KEY_BODY}"

    config = EndpointConfig(model="x:m", api_key_env="MY_UPSTREAM_KEY")
    ws.registry.register("keyed", FunctionModel(answer), config)
    headers = {"headers": {"Authorization": f"Bearer {FAKE_KEY}", "x-api-key": FAKE_KEY}, "cache": False}
    stack = ws.registry.get("keyed")
    asyncio.run(stack.complete(ChatRequest.from_prompt(f"my key is {FAKE_KEY}", extra=headers)))
    with pytest.raises(ProviderError):
        asyncio.run(stack.complete(ChatRequest.from_prompt("fail please", extra=headers)))
    blob = _all_bytes(ws)
    assert blob.count(b"\n") == 2
    assert FAKE_KEY.encode() not in blob and b"sk-proj-abcdefghijklmnop" not in blob
    assert GATEWAY_KEY_BODY.encode() not in blob  # a brickyard gateway key echoed in an answer
    ok, failed = _records(ws)
    assert ok["params"]["extra"]["headers"] == {"Authorization": "<redacted>", "x-api-key": "<redacted>"}
    assert "<redacted>" in ok["request"][0]["content"] and "<redacted>" in failed["error"]
    with connect(ws, database=":memory:") as con:
        rows = con.sql("SELECT * FROM payloads").fetchall()
    assert len(rows) == 2 and FAKE_KEY not in repr(rows)


def test_logs_are_masked_when_the_endpoint_masks_even_refused_requests(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    masking = GuardrailsConfig(input_pii=PiiAction.mask, output_pii=PiiAction.mask)
    ws.registry.register(
        "m", FunctionModel(lambda r: "Card 4111 1111 1111 1111 noted"), EndpointConfig(model="x:m", guardrails=masking)
    )
    blocking = GuardrailsConfig(input_pii=PiiAction.block)
    ws.registry.register("b", FunctionModel(lambda r: "never"), EndpointConfig(model="x:b", guardrails=blocking))
    prompt = "I'm jane@example.com, IBAN GB82 WEST 1234 5698 7654 32"
    asyncio.run(ws.registry.get("m").complete(ChatRequest.from_prompt(prompt)))
    with pytest.raises(GuardrailError):
        asyncio.run(ws.registry.get("b").complete(ChatRequest.from_prompt(prompt)))

    def bad_json(request: ChatRequest) -> str:
        raise MalformedResponseError("the answer is not JSON: 'write to jane@example.com'", endpoint="j")

    ws.registry.register("j", FunctionModel(bad_json), EndpointConfig(model="x:j", guardrails=masking))
    with pytest.raises(MalformedResponseError):
        asyncio.run(ws.registry.get("j").complete(ChatRequest.from_prompt("json please")))
    masked, refused, quoted = _records(ws)
    assert quoted["error"] == "j: the answer is not JSON: 'write to [EMAIL]'"  # errors quoting answers are masked
    assert masked["request"][0]["content"] == "I'm [EMAIL], IBAN [IBAN]"
    assert masked["response_text"] == "Card [CARD] noted"
    assert refused["request"][0]["content"] == "I'm [EMAIL], IBAN [IBAN]"
    assert (refused["status"], refused["error_type"]) == ("error", "GuardrailError")
    blob = _all_bytes(ws)
    assert b"jane@example.com" not in blob and b"GB82" not in blob and b"4111" not in blob


class Slow(Model):
    """Streams words with a pause between them."""

    name = "slow"

    async def _complete(self, request: ChatRequest) -> ChatResult:
        return ChatResult(text="one two three", model=self.name)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        for word in ["one ", "two ", "three"]:
            yield word
            await asyncio.sleep(0.05)


def test_streams_are_logged_and_a_client_that_leaves_is_logged_as_cancelled(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("s", Slow(), EndpointConfig(model="x:s", cache=False))

    async def full() -> str:
        return "".join([p async for p in ws.registry.get("s").stream(ChatRequest.from_prompt("go"))])

    async def leave_early() -> None:
        async def consume() -> None:
            async for _ in ws.registry.get("s").stream(ChatRequest.from_prompt("go"), caller=Caller(key="quitter")):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.07)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert asyncio.run(full()) == "one two three"
    asyncio.run(leave_early())
    done, left = _records(ws)
    assert (done["kind"], done["status"], done["response_text"]) == ("stream", "ok", "one two three")
    assert (left["status"], left["key"], left["response_text"]) == ("cancelled", "quitter", "one two ")
    usage = ws.store.usage()
    assert [(u.status, u.key) for u in usage] == [("ok", None), ("cancelled", "quitter")]
    assert usage[1].output_tokens > 0  # the client that left is still charged for what was produced


def test_embeddings_are_logged_without_vectors(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("emb", FakeModel(embedding_dim=4), EndpointConfig(model="x:e"))
    asyncio.run(ws.registry.get("emb").embed(["a", "b"], caller=Caller(key="k")))
    [rec] = _records(ws)
    assert (rec["kind"], rec["key"], rec["request"], rec["response"]) == (
        "embed",
        "k",
        ["a", "b"],
        {"vectors": 2, "dimensions": 4},
    )
    assert [u.key for u in ws.store.usage()] == ["k"]


def test_long_payloads_are_truncated_and_stay_valid_json(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text("[payloads]\nmax_chars = 300\n", encoding="utf-8")
    ws = Workspace(ws.path)
    ws.registry.register("e", FunctionModel(lambda r: "y" * 1000), EndpointConfig(model="x:e"))
    messages = [{"role": "system", "content": "s" * 500}, {"role": "user", "content": "u" * 800}]
    asyncio.run(ws.registry.get("e").complete(ChatRequest(messages=messages)))
    [rec] = _records(ws)
    assert rec["truncated"] is True
    assert len(json.dumps(rec["request"], ensure_ascii=False)) <= 300
    assert rec["request"][0]["role"] == "system" and rec["request"][1]["content"].startswith("uuu")
    assert rec["response_text"].startswith("y" * 300) and len(rec["response_text"]) < 400


def test_retention_purges_old_days_only(tmp_path: Path) -> None:
    folder = tmp_path / "payloads"
    folder.mkdir()
    for name in ["2020-01-01_1.jsonl", "2024-03-01_7.jsonl", "2024-03-09_7.jsonl", "2024-03-10_8.jsonl", "notes.txt"]:
        (folder / name).write_text("{}\n")
    log = PayloadLog(folder, PayloadsConfig(retention_days=0))  # 0 keeps everything
    assert len(list(folder.iterdir())) == 6  # the five plus the placeholder
    log = PayloadLog(folder, PayloadsConfig(retention_days=5))  # today is long after 2024: all days are old
    assert sorted(p.name for p in folder.iterdir()) == [PLACEHOLDER, "notes.txt"]
    for name in ["2024-03-01_7.jsonl", "2024-03-05_7.jsonl", "2024-03-10_8.jsonl"]:
        (folder / name).write_text("{}\n")
    assert log.purge(today=date(2024, 3, 10)) == 1  # keeps the last 5 days
    assert sorted(p.name for p in folder.glob("2024*")) == ["2024-03-05_7.jsonl", "2024-03-10_8.jsonl"]


def test_disabled_payload_logs_write_nothing(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text("[payloads]\nenabled = false\n", encoding="utf-8")
    ws = Workspace(ws.path)
    ws.registry.register("e", FakeModel(["x"]), EndpointConfig(model="x:e"))
    asyncio.run(ws.registry.get("e").complete(ChatRequest.from_prompt("q")))
    assert ws.payloads is None and not ws.payloads_dir.exists()


def test_the_warehouse_view_is_typed_empty_at_first_and_fills_as_calls_arrive(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with connect(ws, database=":memory:") as con:
        assert con.sql("SELECT count(*) FROM payloads").fetchone() == (0,)
        types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE payloads)").fetchall())
        assert types["ts"] == "TIMESTAMP WITH TIME ZONE" and types["request"] == "JSON"
        assert types["latency_s"] == "DOUBLE" and types["cached"] == "BOOLEAN"
        ws.registry.register("e", FakeModel(["x"]), EndpointConfig(model="x:e"))
        asyncio.run(ws.registry.get("e").complete(ChatRequest.from_prompt("hello"), caller=Caller(key="team-a")))
        rows = con.sql(
            "SELECT endpoint, key, status, request->>'$[0].content', ts > now() - INTERVAL 1 HOUR FROM payloads"
        ).fetchall()
    assert rows == [("e", "team-a", "ok", "hello", True)]


def test_brickyard_sql_reads_the_payloads_table(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    Workspace.init(home).config_path.write_text('[endpoints.echo]\nmodel = "fake:echo"\n', encoding="utf-8")
    ws = Workspace(home)
    asyncio.run(ws.registry.get("echo").complete(ChatRequest.from_prompt("hi"), caller=Caller(key="team-b")))
    asyncio.run(ws.aclose())
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["BRICKYARD_HOME"] = str(home)
    out = subprocess.run(
        [str(Path(sys.executable).parent / "brickyard"), "sql", "SELECT endpoint, key, status FROM payloads"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    assert "echo" in out and "team-b" in out and "ok" in out


def _log_from_process(folder: str, writer: int, n: int, start: float) -> None:
    log = PayloadLog(Path(folder), PayloadsConfig())
    while time.time() < start:
        time.sleep(0.001)
    for i in range(n):
        log.write({"id": f"{writer}-{i}", "endpoint": "e", "response_text": "x" * (i % 50) * 200})
    log.close()


def test_several_processes_log_at_once_and_every_line_is_whole(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, n = time.time() + 1.5, 300
    procs = [ctx.Process(target=_log_from_process, args=(str(tmp_path), w, n, start)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    ids = [json.loads(line)["id"] for p in tmp_path.glob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(ids) == sorted(f"{w}-{i}" for w in range(3) for i in range(n))


def test_a_line_still_being_written_is_skipped_by_the_view(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.registry.register("e", FakeModel(["x"]), EndpointConfig(model="x:e"))
    asyncio.run(ws.registry.get("e").complete(ChatRequest.from_prompt("q")))
    (ws.payloads_dir / "2099-01-01_99.jsonl").write_text('{"id": "half", "endpoint": "e", "sta', encoding="utf-8")
    with connect(ws, database=":memory:") as con:
        assert con.sql("SELECT endpoint, status FROM payloads").fetchall() == [("e", "ok")]
