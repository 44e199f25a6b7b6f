"""Evaluating a knowledge assistant: retrieval metrics on a real knowledge base, judges on the answers."""

from __future__ import annotations

from pathlib import Path

from brickyard import FunctionModel, Workspace
from brickyard.agents.runner import Agents
from brickyard.agents.spec import parse_spec
from brickyard.config import EndpointConfig
from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
from brickyard.knowledge import KnowledgeBase
from brickyard.models._types import ChatRequest
from brickyard.models.local import LocalEmbedder

DOCS = {
    "refunds.txt": "Refunds are paid within 14 days of the returned item arriving at the warehouse.",
    "shipping.txt": "Standard shipping takes three to five working days; express shipping takes one day.",
    "security.txt": "Passwords must be rotated every 90 days and never shared with colleagues.",
}
QUESTIONS = [
    ("How long do refunds take?", "Within 14 days of the return arriving.", "refunds.txt"),
    ("How fast is express shipping?", "One day.", "shipping.txt"),
    ("How often must passwords be rotated?", "Every 90 days.", "security.txt"),
    ("When are refunds paid?", "Within 14 days.", "refunds.txt"),
]


def ingest_policies(ws: Workspace, tmp_path: Path) -> None:
    """The e5 embedder and a knowledge base `policies` of DOCS."""
    ws.registry.register("e5-small", LocalEmbedder())
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    with KnowledgeBase(ws, "policies") as kb:
        assert kb.ingest(str(folder)).ok


def create_agent_and_questions(ws: Workspace) -> None:
    """The knowledge agent `kb` over `policies` and the set `kbq`: QUESTIONS three times, each naming its source."""
    Agents(ws).create(parse_spec({"name": "kb", "kind": "knowledge", "knowledge_base": "policies", "top_k": 2}))
    datasets = EvalDatasets(ws.path)
    cases = [Case(str(i), q, a, {"sources": [src]}) for i, (q, a, src) in enumerate(QUESTIONS * 3)]
    datasets.create("kbq", cases, source="t", dev_fraction=0.25)
    datasets.close()


async def test_a_knowledge_agent_is_scored_on_retrieval_and_by_judges(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    ingest_policies(ws, tmp_path)

    def assistant(request: ChatRequest) -> str:
        return "According to the policy [1]."

    judged: list[str] = []

    def judge(request: ChatRequest) -> dict[str, str]:
        judged.append(str(request.messages[-1]["content"]))
        return {"rationale": "supported", "verdict": "pass"}

    ws.registry.register("assistant", FunctionModel(assistant), EndpointConfig(model="function:a", cache=False))
    ws.registry.register("judge", FunctionModel(judge), EndpointConfig(model="function:j", cache=False))
    create_agent_and_questions(ws)

    rec = (
        await evaluate(
            ws, "kb", "kbq", candidates=["assistant"], judge="judge", plan=HalvingPlan(enabled=False), apply=False
        )
    ).record
    assert rec["metrics"] == [
        "citation_recall",
        "recall@2",
        "mrr",
        "rouge_l",
        "embedding_similarity",
        "correctness",
        "groundedness",
        "relevance",
    ]
    (row,) = rec["leaderboard"]
    assert row["cases"] == 9 and row["errors"] == 0
    assert row["metrics"]["recall@2"]["estimate"] >= 0.8  # e5 finds each question's own document
    assert 0 < row["metrics"]["mrr"]["estimate"] <= 1
    assert row["metrics"]["groundedness"]["estimate"] == 1.0
    assert any("Refunds are paid within 14 days" in text for text in judged)  # the retrieved context was judged


async def test_answer_modes_are_candidates_and_citing_the_right_document_decides(
    workspace: Workspace, tmp_path: Path
) -> None:
    """`ENDPOINT/extractive` quotes the retrieved sentence (no model call), `ENDPOINT/generative` asks the
    model; both share the retrieval, so the primary metric is whether the answer cites its own document."""
    ws = workspace
    ingest_policies(ws, tmp_path)
    asked: list[str] = []

    def assistant(request: ChatRequest) -> str:
        asked.append(str(request.messages[-1]["content"]))
        return "It is in the second document [2]."  # always cites the second-ranked chunk: usually wrong

    ws.registry.register("assistant", FunctionModel(assistant), EndpointConfig(model="function:a", cache=False))
    create_agent_and_questions(ws)
    rec = (
        await evaluate(
            ws,
            "kb",
            "kbq",
            candidates=["assistant/generative", "assistant/extractive"],
            plan=HalvingPlan(enabled=False),
            apply=False,
        )
    ).record
    assert rec["primary"] == "citation_recall"
    assert {c["id"]: c["answer_mode"] for c in rec["candidates"]} == {
        "assistant/generative": "generative",
        "assistant/extractive": "extractive",
    }
    assert len(asked) == 9  # only the generative candidate called the model, once per test case
    rows = {row["id"]: row for row in rec["leaderboard"]}
    extractive, generative = rows["assistant/extractive"]["metrics"], rows["assistant/generative"]["metrics"]
    assert extractive["recall@2"] == generative["recall@2"]  # the same retrieval
    assert extractive["citation_recall"]["estimate"] > generative["citation_recall"]["estimate"]
    assert rec["chosen"] == "assistant/extractive"


async def test_synthetic_questions_come_from_the_knowledge_base_chunks(workspace: Workspace, tmp_path: Path) -> None:
    from brickyard.evals.synthetic import synthesize

    ws = workspace
    ws.registry.register("e5-small", LocalEmbedder())
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    with KnowledgeBase(ws, "policies") as kb:
        kb.ingest(str(folder))

    def teacher(request: ChatRequest) -> dict[str, str]:
        passage = str(request.messages[-1]["content"])
        return {"question": f"What does this say: {passage.split()[1]}?", "answer": passage.split()[1]}

    ws.registry.register("teacher", FunctionModel(teacher), EndpointConfig(model="function:t", cache=False))
    spec = parse_spec({"name": "kb", "kind": "knowledge", "knowledge_base": "policies"})
    cases = await synthesize(ws, spec, "teacher", n=10)
    assert len(cases) == 3  # one per chunk: three short documents
    for case in cases:
        (source,) = case.metadata["sources"]
        assert Path(source).name in DOCS and case.metadata["context"].strip() in DOCS[Path(source).name]
        assert case.input.startswith("What does this say:") and case.expected
