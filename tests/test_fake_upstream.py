"""The fault-injecting fake upstream, over real HTTP with httpx and the official openai SDK."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from brickyard.testing.upstream import FakeUpstream

KEY = "sk-test-1234"


@pytest.fixture
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def sdk(up: FakeUpstream) -> openai.OpenAI:
    return openai.OpenAI(base_url=up.base_url, api_key=KEY, max_retries=0)


def chat(up: FakeUpstream, text: str, timeout: float = 5.0, **extra: Any) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{up.base_url}/chat/completions", json=body, headers=headers, timeout=timeout)


def test_plain_answer_shape(up: FakeUpstream) -> None:
    messages: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    answer = sdk(up).chat.completions.create(model="anything", messages=messages)
    assert answer.id.startswith("chatcmpl-")
    assert answer.object == "chat.completion"
    assert answer.created > 0
    assert answer.model == "fake-gpt"
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == len("be brief" + "hello there") // 4
    assert answer.usage.completion_tokens == len("echo: hello there") // 4
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert up.completed == 1 and up.requests == 1
    assert up.received_headers[-1]["authorization"] == f"Bearer {KEY}"
    assert up.received_bodies[-1]["model"] == "anything"


def test_content_parts_and_n(up: FakeUpstream) -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    data = chat(up, "", messages=[{"role": "user", "content": parts}], n=2).json()
    assert [c["message"]["content"] for c in data["choices"]] == ["echo: ab", "echo: ab"]
    assert data["usage"]["prompt_tokens"] == 1


def test_streaming_reassembles(up: FakeUpstream) -> None:
    stream = sdk(up).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "stream me a few words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream me a few words please"
    assert len([c for c in chunks if c.choices]) > 3
    assert all(c.object == "chat.completion.chunk" and c.model == "fake-gpt" for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(text) // 4


def test_streaming_raw_sse_without_usage(up: FakeUpstream) -> None:
    response = chat(up, "hi", stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "echo: hi"


def test_json_schema_answer_parses(up: FakeUpstream) -> None:
    schema: Any = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    answer = sdk(up).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": 'say "hi"'}],
        response_format={"type": "json_schema", "json_schema": {"name": "e", "schema": schema}},
    )
    assert json.loads(answer.choices[0].message.content or "") == {"echo": 'say "hi"'}


def test_embeddings_are_deterministic(up: FakeUpstream) -> None:
    client = sdk(up)
    first = client.embeddings.create(model="e", input=["alpha", "beta"])
    again = client.embeddings.create(model="e", input="alpha")
    assert [len(d.embedding) for d in first.data] == [8, 8]
    assert first.data[0].embedding == pytest.approx(again.data[0].embedding, abs=1e-6)
    assert first.data[0].embedding != first.data[1].embedding
    assert sum(v * v for v in first.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
    assert first.model == "fake-gpt" and first.usage.prompt_tokens >= 1
    raw = httpx.post(f"{up.base_url}/embeddings", json={"model": "e", "input": "alpha"}).json()
    assert raw["data"][0]["embedding"] == pytest.approx(again.data[0].embedding, abs=1e-6)


def test_models(up: FakeUpstream) -> None:
    assert [m.id for m in sdk(up).models.list()] == ["fake-gpt"]
    assert httpx.get(f"{up.base_url}/models/fake-gpt").json()["id"] == "fake-gpt"
    assert httpx.get(f"{up.base_url}/models/other").status_code == 404


@pytest.mark.parametrize(
    ("marker", "status", "type_", "code"),
    [
        ("[fail:500]", 500, "server_error", None),
        ("[fail:503]", 503, "server_error", None),
        ("[fail:400]", 400, "invalid_request_error", None),
        ("[ctx]", 400, "invalid_request_error", "context_length_exceeded"),
    ],
)
def test_error_markers(up: FakeUpstream, marker: str, status: int, type_: str, code: str | None) -> None:
    response = chat(up, f"row {marker}")
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == type_ and error["code"] == code and error["message"]
    if marker == "[ctx]":
        assert error["message"].startswith("This model's maximum context length is")
    assert up.completed == 0


def test_fail_401_echoes_masked_key(up: FakeUpstream) -> None:
    response = chat(up, "[fail:401]")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert "Incorrect API key provided: sk-te****1234" in error["message"]
    assert KEY not in error["message"]
    with pytest.raises(openai.AuthenticationError):
        sdk(up).chat.completions.create(model="m", messages=[{"role": "user", "content": "[fail:401]"}])


def test_badjson_is_200_with_invalid_body(up: FakeUpstream) -> None:
    response = chat(up, "[badjson]")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_slow_marker_trips_client_timeout(up: FakeUpstream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        chat(up, "[slow:0.4]", timeout=0.1)
    started = time.perf_counter()
    assert chat(up, "[slow:0.2] x").status_code == 200
    assert time.perf_counter() - started >= 0.2


def test_flaky_recovers_after_n(up: FakeUpstream) -> None:
    assert [chat(up, "row 1 [flaky:2]").status_code for _ in range(3)] == [500, 500, 200]
    assert chat(up, "row 2 [flaky:2]").status_code == 500  # counted per distinct text
    up.reset()
    assert chat(up, "row 1 [flaky:2]").status_code == 500


def test_429_marker_recovers_after_n() -> None:
    with FakeUpstream(retry_after_s=0.2) as up:
        responses = [chat(up, "[429:2] row") for _ in range(3)]
        assert [r.status_code for r in responses] == [429, 429, 200]
        assert responses[0].headers["retry-after"] == "0.2"
        assert responses[0].json()["error"]["code"] == "rate_limit_exceeded"
        assert up.rejected_429 == 2 and up.completed == 1 and up.requests == 3
    with FakeUpstream(retry_after_s=1.5) as up:
        assert chat(up, "[429:1]").headers["retry-after"] == "1.5"


def test_rpm_limit_rejects_with_retry_after() -> None:
    with FakeUpstream(rpm_limit=3) as up:
        assert [chat(up, f"row {i}").status_code for i in range(3)] == [200, 200, 200]
        over = chat(up, "row 4")
        assert over.status_code == 429
        assert 0 < float(over.headers["retry-after"]) <= 60
        assert over.json()["error"]["code"] == "rate_limit_exceeded"
        assert up.rejected_429 == 1 and up.completed == 3


def test_scenario_overrides() -> None:
    def scenario(body: dict[str, Any]) -> tuple[int, dict[str, str], Any] | None:
        if "teapot" in json.dumps(body):
            return 418, {"X-Test": "yes"}, {"error": {"message": "short and stout"}}
        return None

    with FakeUpstream(scenario=scenario) as up:
        response = chat(up, "a teapot")
        assert response.status_code == 418 and response.headers["x-test"] == "yes"
        assert response.json()["error"]["message"] == "short and stout"
        assert chat(up, "a cup").json()["choices"][0]["message"]["content"] == "echo: a cup"


def test_concurrency_counters_and_reset() -> None:
    with FakeUpstream(latency_s=0.2) as up:
        statuses: list[int] = []

        def call(i: int) -> None:
            statuses.append(chat(up, f"r{i}").status_code)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.perf_counter() - started < 1.5
        assert statuses == [200] * 10
        assert up.max_in_flight > 1
        assert up.requests == 10 and up.completed == 10 and up.rejected_429 == 0
        texts = sorted(b["messages"][0]["content"] for b in up.received_bodies)
        assert texts == sorted(f"r{i}" for i in range(10))
        assert len(up.received_headers) == 10
        # a handler thread leaves its request just after the client has read the response: wait for the last
        deadline = time.monotonic() + 5
        while up.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        up.reset()  # keeps what is still in flight as the new maximum: nothing, now
        assert (up.requests, up.completed, up.max_in_flight, up.received_bodies) == (0, 0, 0, [])


def test_record_limit_and_close() -> None:
    up = FakeUpstream(record_limit=2).start()
    for i in range(3):
        chat(up, f"r{i}")
    assert [b["messages"][0]["content"] for b in up.received_bodies] == ["r1", "r2"]
    url = up.base_url
    up.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models")


def test_standalone_cli() -> None:
    command = [sys.executable, "-m", "brickyard.testing.upstream", "--port", "0", "--latency", "0"]
    proc = subprocess.Popen(command, cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert httpx.get(f"{url}/models").json()["data"][0]["id"] == "fake-gpt"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=5)
        assert "requests=1 completed=1" in out
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_client_reset_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeUpstream() as up:
        conn = socket.create_connection(("127.0.0.1", up.port))
        conn.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        conn.close()
        time.sleep(0.1)
        assert up.requests == 1 and up.completed == 1
    assert "Exception" not in capsys.readouterr().err
