"""Synthetic evaluation cases when there are no labels, made by a teacher endpoint from the agent's own data.

- Knowledge agents: a question and its answer from sampled chunks of the knowledge base (the chunk's
  document is the expected source, its text the grounding context).
- Other agents given unlabelled inputs: the teacher runs the agent's own task, and its answers become the
  expected outputs ("silver" labels, to be reviewed).
- Classify and extract agents without inputs: the teacher writes inputs (one per label, or one matching
  the output schema) together with their expected output.

Chunk and input text goes to the teacher delimited as data. Cases are stored as a dataset marked
synthetic; `brickyard eval dataset export` writes them out for review and editing.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from typing import Any

from brickyard._errors import UserError
from brickyard.agents.runner import Agents
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.agents.trace import Trace
from brickyard.batch import run_batch
from brickyard.evals._types import Case
from brickyard.functions._rows import DATA_RULE, delimited
from brickyard.models._types import ChatRequest
from brickyard.models.base import Model
from brickyard.workspace import Workspace

_QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}


def _chunks(workspace: Workspace, kb_name: str, n: int, seed: int) -> list[dict[str, Any]]:
    from brickyard.knowledge.base import KnowledgeBase

    with KnowledgeBase(workspace, kb_name) as kb:
        rows = kb.con.execute(f"SELECT chunk_id, source_path, text FROM {kb.chunks_table} ORDER BY chunk_id").fetchall()
    if not rows:
        raise UserError(f"knowledge base {kb_name} has no chunks. Fix: `brickyard kb ingest {kb_name} FOLDER`")
    random.Random(seed).shuffle(rows)
    return [{"chunk_id": c, "source": s, "text": t} for c, s, t in rows[:n]]


async def questions_from_chunks(workspace: Workspace, spec: AgentSpec, teacher: Model, n: int, seed: int) -> list[Case]:
    assert spec.knowledge_base is not None
    chunks = _chunks(workspace, spec.knowledge_base, n, seed)
    system = (
        "Write one question a user could ask that the passage answers, and the answer, taken from the passage. "
        f"Answer with JSON {{question, answer}}. {DATA_RULE}"
    )
    requests = [
        ChatRequest(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": delimited(chunk["text"])}],
            temperature=0.0,
            max_tokens=300,
            json_schema=_QA_SCHEMA,
            schema_name="qa",
        )
        for chunk in chunks
    ]
    report = await run_batch(teacher, requests, progress=False, description="synthetic questions")
    cases = []
    for chunk, row in zip(chunks, report.rows, strict=True):
        data = row.result.json if row.result is not None else None
        if isinstance(data, dict) and str(data.get("question", "")).strip():
            cases.append(
                Case(
                    id=f"syn-{chunk['chunk_id']}",
                    input=str(data["question"]).strip(),
                    expected=str(data.get("answer", "")).strip() or None,
                    metadata={"sources": [chunk["source"]], "context": chunk["text"], "synthetic": True},
                )
            )
    return cases


async def label_inputs(workspace: Workspace, spec: AgentSpec, teacher: str, inputs: Sequence[str]) -> list[Case]:
    """The teacher runs the agent's task on each input; its answers become the expected outputs."""
    agents = Agents(workspace)
    variant = spec.model_copy(update={"endpoint": teacher})
    semaphore = asyncio.Semaphore(8)

    async def one(index: int, text: str) -> Case | None:
        async with semaphore:
            try:
                output = await agents.execute(variant, text, Trace(agent=spec.name, version=0, input=text))
            except Exception:
                return None
        return Case(id=f"syn-{index}", input=text, expected=output, metadata={"synthetic": True})

    try:
        labelled = await asyncio.gather(*(one(i, t) for i, t in enumerate(inputs)))
    finally:
        agents.close()
    return [c for c in labelled if c is not None]


async def invent_inputs(spec: AgentSpec, teacher: Model, n: int, seed: int) -> list[Case]:
    """Classify: texts written for each label in turn. Extract: texts that contain values for the schema."""
    rng = random.Random(seed)
    requests: list[ChatRequest] = []
    expected: list[Any] = []
    topic = spec.description or spec.instructions or spec.name
    for index in range(n):
        if spec.kind is AgentKind.classify:
            labels = list(spec.labels) if spec.labels is not None else []
            label = labels[index % len(labels)]
            prompt = f"Write one realistic input for this task: {topic}. Its correct label must be `{label}`."
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            }
            expected.append(label)
        else:
            prompt = (
                f"Write one realistic input for this task: {topic}, and the values a perfect extraction would "
                f"return, as JSON {{text, fields}}; fields follow this schema: {json.dumps(spec.output_schema)}. "
                f"Variation {rng.randint(1, 10**6)}."
            )
            schema = {
                "type": "object",
                "properties": {"text": {"type": "string"}, "fields": spec.output_schema},
                "required": ["text", "fields"],
            }
            expected.append(None)
        requests.append(
            ChatRequest(
                messages=[{"role": "user", "content": prompt}],
                temperature=0.8,
                seed=seed + index,
                max_tokens=400,
                json_schema=schema,
                schema_name="synthetic_case",
                extra={"cache": False},
            )
        )
    report = await run_batch(teacher, requests, progress=False, description="synthetic inputs")
    cases = []
    for index, (row, label) in enumerate(zip(report.rows, expected, strict=True)):
        data = row.result.json if row.result is not None else None
        if not isinstance(data, dict) or not str(data.get("text", "")).strip():
            continue
        target = label if label is not None else data.get("fields")
        cases.append(
            Case(id=f"syn-{index}", input=str(data["text"]).strip(), expected=target, metadata={"synthetic": True})
        )
    return cases


async def synthesize(
    workspace: Workspace,
    spec: AgentSpec,
    teacher: str,
    *,
    n: int = 50,
    inputs: Sequence[str] | None = None,
    seed: int = 0,
) -> list[Case]:
    """Synthetic cases for `spec` made by the `teacher` endpoint (see the module docstring)."""
    model = workspace.registry.get(teacher)
    if spec.kind is AgentKind.knowledge:
        cases = await questions_from_chunks(workspace, spec, model, n, seed)
    elif inputs:
        cases = await label_inputs(workspace, spec, teacher, list(inputs)[:n])
    elif spec.kind in (AgentKind.classify, AgentKind.extract):
        cases = await invent_inputs(spec, model, n, seed)
    else:
        raise UserError(f"a {spec.kind.value} agent needs inputs to label. Fix: --from FILE --input-column COLUMN")
    if not cases:
        raise UserError(f"the teacher {teacher} produced no usable case. Fix: try a stronger teacher endpoint")
    return cases
