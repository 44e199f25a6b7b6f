"""Agent specs, versions, runs and traces, with exact behaviour from test doubles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DETERMINISTIC_CONFIG

from brickyard import ChatRequest, ConfigError, FunctionModel, UserError, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec, load_spec, schema_from_example
from brickyard.config import EndpointConfig
from brickyard.sql.duckdb import connect
from brickyard.testing.deterministic import answer

CONFIG = DETERMINISTIC_CONFIG


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.config_path.write_text(CONFIG)
    return Workspace(workspace.path)


def recording(requests: list[ChatRequest]) -> FunctionModel:
    def fn(request: ChatRequest) -> Any:
        requests.append(request)
        return answer(request)

    return FunctionModel(fn, name="function:det")


def test_spec_validation_names_key_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nkind: extract\ninstructions: hi\n")
    with pytest.raises(ConfigError, match="output_schema"):
        load_spec(path)
    path.write_text("name: x\nkind: classify\nlabels: [a, b]\nlabelz: [c]\n")
    with pytest.raises(ConfigError, match=r"labelz.*Fix: remove it"):
        load_spec(path)
    path.write_text("name: x\nkind: summarise\n")
    with pytest.raises(ConfigError, match="kind"):
        load_spec(path)
    with pytest.raises(UserError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_schema_from_an_example_output_keeps_nesting() -> None:
    schema = schema_from_example({"name": "Ada", "age": 36, "skills": [{"name": "math", "years": 10}]})
    assert schema["properties"]["age"] == {"type": ["integer", "null"]}
    item = schema["properties"]["skills"]["items"]
    assert item["type"] == "object" and set(item["properties"]) == {"name", "years"}


def test_versions_and_runs_are_recorded(ws: Workspace, tmp_path: Path) -> None:
    agents = Agents(ws)
    spec_file = tmp_path / "people.yaml"
    spec_file.write_text(
        "name: people\nkind: extract\ninstructions: Extract the person.\nguidelines: [Use full names]\n"
        "example_output: {person: Ada Lovelace, year: 1843}\n"
    )
    assert agents.create(load_spec(spec_file)) == 1
    requests: list[ChatRequest] = []
    ws.registry.register("det", recording(requests), EndpointConfig(model="function:det"))

    async def go() -> Any:
        return await agents.run("people", "the first program was by Ada Lovelace in 1843.")

    import asyncio

    run = asyncio.run(go())
    assert run.output == {"person": "Ada", "year": 1843}  # a number the text holds
    assert "Use full names" in requests[-1].messages[0]["content"]  # guidelines reach the model
    stored = agents.store.run(run.run_id)
    assert stored["version"] == 1 and stored["steps"][0]["kind"] == "model" and stored["input_tokens"] > 0
    spec_file.write_text(spec_file.read_text().replace("Extract the person.", "Extract the main person."))
    assert agents.create(load_spec(spec_file)) == 2
    second = asyncio.run(go())
    assert agents.store.run(second.run_id)["version"] == 2
    assert agents.store.get("people", 1)[0].instructions == "Extract the person."
    agents.store.delete("people")
    with pytest.raises(UserError, match="no agent `people`"):
        agents.store.get("people")


async def test_classify_and_transform_agents(ws: Workspace) -> None:
    agents = Agents(ws)
    agents.create(AgentSpec(name="triage", kind=AgentKind.classify, labels={"bug": "broken", "billing": "money"}))
    agents.create(
        AgentSpec(
            name="shout",
            kind=AgentKind.transform,
            instructions="Rewrite in capitals.",
            examples=[{"input": "hello", "output": "HELLO"}],
        )
    )
    requests: list[ChatRequest] = []
    ws.registry.register("det", recording(requests), EndpointConfig(model="function:det"))
    run = await agents.run("triage", "I was charged twice")
    assert run.output in ("bug", "billing")
    run = await agents.run("shout", "good morning")
    assert run.output == "echo: good morning"
    messages = requests[-1].messages
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # the few-shot example
    assert messages[2]["content"] == "HELLO"


async def test_run_many_keeps_every_row(ws: Workspace) -> None:
    agents = Agents(ws)
    agents.create(AgentSpec(name="triage", kind=AgentKind.classify, labels=["a", "b"]))

    def flaky(request: ChatRequest) -> Any:
        if "BOOM" in str(request.messages[-1]["content"]):
            raise ValueError("cannot classify BOOM")
        return answer(request)

    ws.registry.register(
        "det", FunctionModel(flaky, name="function:det"), EndpointConfig(model="function:det", max_retries=0)
    )
    runs = await agents.run_many("triage", ["one", None, "BOOM here", "two"])
    assert runs[1] is None
    assert runs[0] is not None and runs[0].output in ("a", "b")
    assert runs[2] is not None and runs[2].output is None and "BOOM" in (runs[2].trace.error or "")
    assert runs[3] is not None and runs[3].output in ("a", "b")


def test_agents_are_callable_from_sql(ws: Workspace) -> None:
    agents = Agents(ws)
    agents.create(AgentSpec(name="people", kind=AgentKind.extract, example_output={"person": "x"}))
    with connect(ws) as con:
        got = con.sql("SELECT ai_query('agent:people', 'Grace Hopper wrote a compiler.')").fetchone()[0]
        assert json.loads(got) == {"person": "Grace"}
        with pytest.raises(Exception, match="no agent `nobody`"):
            con.sql("SELECT ai_query('agent:nobody', 'x')").fetchall()
    assert len(agents.store.runs("people")) == 1


async def test_supervisor_routes_to_the_sql_tool_and_a_sub_agent(ws: Workspace) -> None:
    with connect(ws) as con:
        con.execute("CREATE TABLE orders AS SELECT * FROM (VALUES (1, 9.5), (2, 20.0), (3, 5.0)) t(id, amount)")
    agents = Agents(ws)
    agents.create(
        AgentSpec(
            name="triage",
            kind=AgentKind.classify,
            labels=["bug", "billing"],
            description="Classifies a support ticket as bug or billing",
        )
    )
    agents.create(
        AgentSpec(
            name="boss", kind=AgentKind.supervisor, agents=["triage"], tools=["sql"], tables=["orders"], max_steps=4
        )
    )
    seen: list[str] = []

    def brain(request: ChatRequest) -> Any:
        schema = request.json_schema or {}
        props = schema.get("properties", {})
        if "sql" in props:  # the SQL tool writing its query
            return {"sql": "SELECT count(*) AS n FROM orders"}
        if "action" in props:  # the supervisor deciding its next step
            transcript = json.dumps([m for m in request.messages if m["role"] != "system"])
            if "tool_result" not in transcript:
                seen.append("route:sql")
                return {"action": "sql", "input": "How many orders are there?"}
            if "triage" not in " ".join(seen):
                seen.append("route:triage")
                return {"action": "triage", "input": "I was charged twice"}
            seen.append("final")
            return {"action": "final_answer", "input": "There are 3 orders; the ticket is about billing."}
        return answer(request)

    brain_model = FunctionModel(brain, name="function:det")
    brain_model.supports_tools = False  # like a local model: the constrained JSON protocol
    ws.registry.register("det", brain_model, EndpointConfig(model="function:det"))
    run = await agents.run("boss", "How many orders, and what is this ticket about: I was charged twice?")
    assert run.output == "There are 3 orders; the ticket is about billing."
    assert seen == ["route:sql", "route:triage", "final"]
    kinds = [s["kind"] for s in agents.store.run(run.run_id)["steps"]]
    assert "sql" in kinds and "tool" in kinds and "agent" in kinds
    assert len(agents.store.runs("triage")) == 1  # the sub-agent ran, with its own trace


@pytest.mark.local_model
async def test_extract_classify_and_transform_agents_with_the_real_local_model(
    tmp_path: Path, smollm2_path: Path
) -> None:
    workspace = Workspace.init(tmp_path / "real")
    workspace.config_path.write_text(f'[local]\nmodels_dir = "{smollm2_path.parent}"\nparallel = 2\n')
    ws = Workspace(workspace.path)
    agents = Agents(ws)
    agents.create(
        AgentSpec(
            name="people",
            kind=AgentKind.extract,
            example_output={"person": "Ada", "year": 1843},
            instructions="Extract the person and the year.",
        )
    )
    agents.create(AgentSpec(name="mood", kind=AgentKind.classify, labels=["happy", "sad"]))
    agents.create(AgentSpec(name="short", kind=AgentKind.transform, instructions="Rewrite in five words."))
    try:
        people = await agents.run("people", "In 1952 Grace Hopper built the first compiler.")
        assert set(people.output) == {"person", "year"}
        assert people.output["year"] is None or isinstance(people.output["year"], int)
        mood = await agents.run("mood", "What a wonderful day!")
        assert mood.output in ("happy", "sad")
        short = await agents.run("short", "The committee met on Tuesday to discuss the budget for next year.")
        assert isinstance(short.output, str) and short.output
        assert all(agents.store.run(r.run_id)["input_tokens"] > 0 for r in (people, mood, short))
    finally:
        await ws.aclose()
