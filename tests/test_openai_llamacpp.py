"""The `openai` provider against llama.cpp's own OpenAI-compatible HTTP server, started in-process.

`xllamacpp.Server(params)` with `params.port` set also runs llama.cpp's HTTP server; it listens on
`params.hostnames` (pinned to 127.0.0.1 here). The model is the bundled SmolLM2-135M: answers are
checked for shape and type only, never wording.
"""

from __future__ import annotations

import gc
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from brickyard.batch import run_batch
from brickyard.models._types import ChatRequest
from brickyard.models.openai_provider import OpenAIModel, create
from brickyard.models.provider import ProviderSpec

pytestmark = pytest.mark.local_model

HOST = "127.0.0.1"
MODEL = "smollm2"  # llama.cpp serves the one loaded model whatever name is asked for
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(root: str) -> None:
    """Poll `/health` until llama.cpp answers 200, then send one tiny completion so the first test is not cold."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{root}/health", timeout=2.0)
            if response.status_code == 200:
                break
            last = response.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    else:
        raise RuntimeError(f"llama.cpp server at {root} not ready after {READY_TIMEOUT_S}s (last: {last!r})")
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    httpx.post(f"{root}/v1/chat/completions", json=body, timeout=READY_TIMEOUT_S).raise_for_status()


@pytest.fixture(scope="module")
def llama_url(smollm2_path: Path) -> Iterator[str]:
    """`http://127.0.0.1:PORT/v1` of an in-process llama.cpp server with two slots."""
    import xllamacpp

    port = free_port()
    params = xllamacpp.CommonParams()
    params.model.path = str(smollm2_path)
    params.n_parallel = 2
    params.n_ctx = 4096
    params.warmup = False
    params.verbosity = -1
    # One thread, not two: on this 2-core machine other work (benchmarks, parallel test runs) often
    # holds a core, and llama.cpp's threads then wait on each other at every barrier. Measured with a
    # busy neighbour: 2 threads took 1-24 s for a 12-token answer, 1 thread 0.23-0.5 s.
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.hostnames = [HOST]
    params.port = port
    server = xllamacpp.Server(params)
    root = f"http://{HOST}:{port}"
    try:
        assert server.listening_address == root, "llama.cpp must listen on loopback only"
        wait_ready(root)
        yield f"{root}/v1"
    finally:
        del server
        gc.collect()


@pytest.fixture
async def llama(llama_url: str) -> AsyncIterator[OpenAIModel]:
    model = OpenAIModel(MODEL, api_key=None, endpoint="llamacpp", base_url=llama_url, timeout_s=60)
    yield model
    await model.aclose()


async def test_short_completion_has_text_and_real_usage(llama: OpenAIModel) -> None:
    request = ChatRequest.from_prompt("Say hello.", max_tokens=12, temperature=0.0, seed=1)
    result = await llama.complete(request)
    assert isinstance(result.text, str) and result.text.strip()
    assert not result.usage.estimated, "llama.cpp reports usage; it is taken, not estimated"
    assert result.usage.input_tokens > 3, "the chat template adds tokens around the prompt"
    assert 0 < result.usage.output_tokens <= 12
    assert result.finish_reason in ("stop", "length")
    assert result.model, "the server names its model"
    assert result.latency_s > 0


async def test_created_from_a_spec_without_key(llama_url: str) -> None:
    model = create(ProviderSpec(provider="openai", model=MODEL, endpoint="llamacpp", base_url=llama_url))
    try:
        result = await model.complete(ChatRequest.from_prompt("Name a colour.", max_tokens=6, temperature=0.0))
    finally:
        await model.aclose()
    assert result.usage.output_tokens > 0


async def test_stream_yields_several_pieces(llama: OpenAIModel) -> None:
    request = ChatRequest.from_prompt("Count from one to five.", max_tokens=16, temperature=0.0, seed=1)
    pieces = [piece async for piece in llama.stream(request)]
    assert len(pieces) >= 2
    assert all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip()


async def test_json_schema_answer_parses_with_required_keys(llama: OpenAIModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative"]},
            "stars": {"type": "integer", "minimum": 1, "maximum": 5},
            "topic": {"type": "string", "maxLength": 12},
        },
        "required": ["sentiment", "stars", "topic"],
        "additionalProperties": False,
    }
    request = ChatRequest.from_prompt(
        "Review: 'Great phone, the battery lasts two days.' Answer as JSON.",
        json_schema=schema,
        max_tokens=60,
        temperature=0.0,
        seed=1,
    )
    result = await llama.complete(request)
    assert isinstance(result.json, dict)
    assert json.loads(result.text) == result.json
    assert set(result.json) == {"sentiment", "stars", "topic"}
    assert result.json["sentiment"] in ("positive", "negative")
    assert isinstance(result.json["stars"], int) and 1 <= result.json["stars"] <= 5
    assert isinstance(result.json["topic"], str) and len(result.json["topic"]) <= 12


async def test_batch_over_two_slots(llama: OpenAIModel) -> None:
    requests = [ChatRequest.from_prompt(f"Say the number {i}.", max_tokens=6, temperature=0.0) for i in range(4)]
    report = await run_batch(llama, requests, concurrency=2, progress=False)
    assert report.errors == 0
    assert [row.index for row in report.rows] == [0, 1, 2, 3]
    assert all(row.result is not None and row.result.usage.output_tokens > 0 for row in report.rows)


def test_official_sdk_works_against_it(llama_url: str) -> None:
    client = openai.OpenAI(base_url=llama_url, api_key="not-needed", max_retries=0, timeout=60)
    try:
        assert [m.id for m in client.models.list()], "the server lists its model"
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0.0
        )
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        client.close()
    assert isinstance(answer.choices[0].message.content, str) and answer.choices[0].message.content
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 8
    assert streamed.strip()
