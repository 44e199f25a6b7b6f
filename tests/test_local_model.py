"""The local provider with the real bundled SmolLM2 model (few, small requests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brickyard import ChatRequest, ContextWindowError, InvalidRequestError, ModelNotPulledError, run_batch
from brickyard.functions import classify
from brickyard.models.local import LocalEmbedder
from brickyard.workspace import Workspace

pytestmark = pytest.mark.local_model

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Workspace:
    path = tmp_path_factory.mktemp("local")
    workspace = Workspace.init(path / "ws")
    (workspace.path / "brickyard.toml").write_text(
        f'[local]\nmodels_dir = "{smollm2_path.parent}"\nparallel = 2\ncontext_per_slot = 1024\n'
    )
    return Workspace(workspace.path)


async def test_json_schema_output_always_parses(ws: Workspace) -> None:
    model = ws.model("smollm2")
    requests = [
        ChatRequest.from_prompt(f"Invent person number {i}. Reply in JSON.", json_schema=PERSON, max_tokens=80)
        for i in range(3)
    ]
    report = await run_batch(model, requests, progress=False)
    assert [row.index for row in report.rows] == [0, 1, 2]
    for row in report.rows:
        # A grammar constrains the output, so a finished answer is valid JSON of the schema's shape;
        # an answer cut at max_tokens must surface as that row's error, never as bad data.
        if row.result is not None:
            assert isinstance(row.result.json, dict)
            assert isinstance(row.result.json["name"], str)
            assert isinstance(row.result.json["age"], int)
            assert json.loads(row.result.text) == row.result.json
        else:
            assert row.error_type == "MalformedResponseError"
    assert sum(row.ok for row in report.rows) >= 2


async def test_identical_prompts_hit_the_cache(ws: Workspace) -> None:
    model = ws.model("smollm2")
    request = ChatRequest.from_prompt("Say one word about the sea.", max_tokens=6)
    first = await model.complete(request)
    second = await model.complete(request)
    assert not first.cached and second.cached
    assert second.text == first.text
    assert first.usage.input_tokens > 0 and not first.usage.estimated
    records = ws.store.usage(endpoint="smollm2")
    assert [r.cache_hit for r in records[-2:]] == [False, True]


async def test_classify_answers_within_the_label_set(ws: Workspace) -> None:
    texts = ["A joyous, moving film.", None, "Dull and far too long.", "A joyous, moving film."]
    outcome = await classify(texts, ["fresh", "rotten"], ws.model("smollm2"), progress=False)
    assert outcome.values[1] is None and outcome.errors[1] is None  # NULL in, NULL out, no call
    assert all(label in {"fresh", "rotten"} for i, label in enumerate(outcome.values) if i != 1)
    assert outcome.values[0] == outcome.values[3]
    assert outcome.reports[0].distinct == 2  # the repeated text was sent once


async def test_streaming_yields_pieces(ws: Workspace) -> None:
    pieces = [p async for p in ws.model("smollm2").stream(ChatRequest.from_prompt("Count: one, two,", max_tokens=8))]
    assert len(pieces) >= 2 and "".join(pieces).strip()


async def test_prompt_longer_than_context_is_a_clear_error(ws: Workspace) -> None:
    with pytest.raises(ContextWindowError, match="context_per_slot"):
        await ws.model("smollm2").complete(ChatRequest.from_prompt("word " * 3000, max_tokens=4))


async def test_schema_the_grammar_cannot_express_is_a_user_error(ws: Workspace) -> None:
    bad = {"type": "object", "properties": {"a": {"type": "strin"}}}
    with pytest.raises(InvalidRequestError, match="JSON schema"):
        await ws.model("smollm2").complete(ChatRequest.from_prompt("x", json_schema=bad, max_tokens=4))


async def test_empty_prompt_is_refused_before_the_model(ws: Workspace) -> None:
    with pytest.raises(InvalidRequestError, match="empty"):
        await ws.model("smollm2").complete(ChatRequest.from_prompt("   "))


def test_unpulled_model_names_the_pull_command(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.path / "brickyard.toml").write_text(f'[local]\nmodels_dir = "{tmp_path / "empty"}"\n')
    with pytest.raises(ModelNotPulledError, match="brickyard models pull gemma3-270m"):
        Workspace(ws.path).model("gemma3")
    assert "not pulled" in (Workspace(ws.path).registry.readiness("gemma3") or "")


async def test_bundled_embedder_gives_normalised_vectors() -> None:
    embedder = LocalEmbedder()
    result = await embedder.embed(["a happy film", "a joyful movie", "tax law of 1920"])
    assert len(result.vectors) == 3 and len(result.vectors[0]) == 384
    a, b, c = result.vectors

    def dot(x: list[float], y: list[float]) -> float:
        return sum(i * j for i, j in zip(x, y, strict=True))

    assert abs(dot(a, a) - 1.0) < 1e-3
    assert dot(a, b) > dot(a, c)
