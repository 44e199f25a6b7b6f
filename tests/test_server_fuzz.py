"""Schema-driven fuzzing of the server's own OpenAPI document (schemathesis): no input gives a 5xx."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import SERVER_CONFIG, make_key
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from brickyard import FakeModel, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.config import EndpointConfig
from brickyard.server.app import create_app
from brickyard.sql.duckdb import connect

VALID_MODELS = ("echo", "fast", "emb", "agent:sentiment")


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    workspace = Workspace.init(root / "ws")
    workspace.config_path.write_text(SERVER_CONFIG + "\n[server]\nsql_timeout_s = 2\n", encoding="utf-8")
    ws = Workspace(workspace.path)
    # answers `{}` to anything: valid text, and valid JSON whatever schema the fuzzer asks for
    ws.registry.register("echo", FakeModel(["{}"], name="fake:echo"), EndpointConfig(model="fake:echo", cache=False))
    Agents(ws).create(AgentSpec(name="sentiment", kind=AgentKind.classify, labels=["good", "bad"]))
    with connect(ws) as con:
        con.execute("CREATE TABLE notes AS SELECT 'a note' AS body")
    key = make_key(ws, "fuzzer", admin=True, sql=True)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(ws)), key


def test_no_input_gives_a_server_error(fuzz_target: tuple[Any, str]) -> None:
    """Every operation, 50 generated cases each (fixed seed; BRICKYARD_FUZZ_EXAMPLES for more); half the bodies
    name a model that exists."""
    schema, key = fuzz_target
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        started = time.perf_counter()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("BRICKYARD_FUZZ_EXAMPLES", "50")),
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            body = case.body
            if isinstance(body, dict) and isinstance(body.get("model"), str) and len(repr(body)) % 2:
                body["model"] = VALID_MODELS[len(repr(body)) % len(VALID_MODELS)]
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {body!r} -> {response.status_code} {response.text}"
                )
            else:
                case.validate_response(response, checks=[not_a_server_error])

        fuzz()
        print(f"{operation.label}: {time.perf_counter() - started:.1f} s")
    assert not failures, "\n".join(failures[:5])
