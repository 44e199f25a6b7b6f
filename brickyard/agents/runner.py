"""Running agents: one input or a whole column, each run traced and stored."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from brickyard._errors import BrickyardError, UnknownEndpointError, UserError
from brickyard.agents.spec import AgentKind, AgentSpec, Strategy
from brickyard.agents.trace import Trace, TracingModel
from brickyard.functions import classify, extract
from brickyard.functions._demos import nearest
from brickyard.functions._rows import DATA_RULE, Demo, delimited, is_null
from brickyard.models._types import ChatRequest, ChatResult, Usage, estimate_tokens
from brickyard.models.base import Model
from brickyard.models.budget import CallerModel
from brickyard.models.calls import ANONYMOUS, Call, Caller, Reply, answer_whole
from brickyard.models.provider import NamespaceInfo
from brickyard.workspace import Workspace

if TYPE_CHECKING:
    from brickyard.store.agents import AgentStore


@dataclass
class AgentRun:
    """The answer of one run and its trace (with `run_id`)."""

    output: Any
    trace: Trace

    @property
    def run_id(self) -> str:
        return self.trace.run_id


class Agents:
    """The workspace's agents: define, version, run and trace them."""

    def __init__(self, workspace: Workspace, *, wrap_model: Callable[[str, Model], Model] | None = None) -> None:
        self.workspace = workspace
        self._wrap_model = wrap_model
        self._example_vectors: dict[str, np.ndarray] = {}

    @property
    def store(self) -> AgentStore:
        """The workspace's agent store: shared by every `Agents` of the workspace, closed by `ws.aclose()`."""
        return self.workspace.agent_store

    def create(self, spec: AgentSpec) -> int:
        """Save a spec; an existing agent gets a new version. Returns the version number."""
        return self.store.save(spec)

    def model_for(self, spec: AgentSpec, caller: Caller = ANONYMOUS) -> Model:
        return self._model(spec.endpoint or self.workspace.settings.defaults.chat, caller)

    def _model(self, name: str, caller: Caller = ANONYMOUS) -> Model:
        model = self.workspace.registry.get(name)
        model = self._wrap_model(name, model) if self._wrap_model else model
        return CallerModel(model, caller) if caller != ANONYMOUS else model

    async def demos_for(self, spec: AgentSpec, text: str, caller: Caller = ANONYMOUS) -> list[Demo]:
        """The demonstrations a run shows: none (zero-shot), or the `few_shot_k` examples most similar to `text`."""
        if spec.strategy is not Strategy.few_shot or not spec.examples:
            return []
        k = min(spec.few_shot_k, len(spec.examples))
        if k < len(spec.examples):
            embedder = self._model(self.workspace.settings.defaults.embedding, caller)
            key = hashlib.sha256(json.dumps([e.input for e in spec.examples]).encode()).hexdigest()
            if key not in self._example_vectors:
                vectors = (await embedder.embed([e.input for e in spec.examples])).vectors
                self._example_vectors[key] = np.asarray(vectors, dtype=np.float32)
            query = (await embedder.embed([text])).vectors
            chosen = [spec.examples[i] for i in nearest(self._example_vectors[key], query, k)[0]]
        else:
            chosen = list(spec.examples)
        return [Demo(e.input, e.output if isinstance(e.output, str) else json.dumps(e.output)) for e in chosen]

    async def run(self, name: str, text: str, *, version: int | None = None, caller: Caller = ANONYMOUS) -> AgentRun:
        """Run the agent on one input for `caller` (its key, budgets and limits); the trace is stored."""
        spec, number = self.store.get(name, version)
        trace = Trace(agent=name, version=number, input=text)
        started = time.perf_counter()
        try:
            trace.output = await self._dispatch(spec, text, trace, caller)
        except BrickyardError as exc:
            trace.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            trace.latency_s = time.perf_counter() - started
            self.store.record_run(trace)
        return AgentRun(trace.output, trace)

    async def run_many(self, name: str, texts: Sequence[str | None], *, concurrency: int = 4) -> list[AgentRun | None]:
        """Run over many inputs (NULL in → None out); a failing row raises nothing, its trace has the error."""
        semaphore = asyncio.Semaphore(concurrency)

        async def one(text: str | None) -> AgentRun | None:
            if is_null(text) or not str(text).strip():
                return None
            async with semaphore:
                try:
                    return await self.run(name, str(text))
                except BrickyardError as exc:
                    failed = Trace(agent=name, version=0, input=str(text), error=str(exc))
                    return AgentRun(None, failed)

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def execute(self, spec: AgentSpec, text: str, trace: Trace) -> Any:
        """Run a spec that need not be saved (the evaluator's candidates); calls are traced, nothing stored."""
        return await self._dispatch(spec, text, trace)

    async def _dispatch(self, spec: AgentSpec, text: str, trace: Trace, caller: Caller = ANONYMOUS) -> Any:
        model = TracingModel(self.model_for(spec, caller), trace)
        rules = spec.system_rules() or None
        if spec.kind is AgentKind.extract:
            assert spec.output_schema is not None
            demos = [await self.demos_for(spec, text, caller)]
            outcome = await extract([text], spec.output_schema, model, instructions=rules, progress=False, demos=demos)
            return _single(outcome.values, outcome.errors)
        if spec.kind is AgentKind.classify:
            assert spec.labels is not None
            outcome = await classify(
                [text],
                spec.labels,
                model,
                instructions=rules,
                multilabel=spec.multilabel,
                progress=False,
                demos=[await self.demos_for(spec, text, caller)],
                reasoning=spec.strategy is Strategy.chain_of_thought,
            )
            return _single(outcome.values, outcome.errors)
        if spec.kind is AgentKind.transform:
            shown = await self.demos_for(spec, text, caller) if spec.strategy is Strategy.few_shot else None
            return await transform(spec, text, model, demos=shown)
        if spec.kind is AgentKind.knowledge:
            return await self._knowledge(spec, text, model, trace)
        return await self._supervise(spec, text, model, trace)

    async def _knowledge(self, spec: AgentSpec, text: str, model: Model, trace: Trace) -> Any:
        from brickyard.knowledge.answer import answer
        from brickyard.knowledge.base import KnowledgeBase

        assert spec.knowledge_base is not None
        kb = KnowledgeBase(self.workspace, spec.knowledge_base)
        result = await answer(kb, text, model, k=spec.top_k, trace=trace, answer_mode=spec.answer_mode)
        return {
            "answer": result.text,
            "citations": [dataclasses.asdict(c) for c in result.citations],
            "known": result.known,
            "context": [hit.text for hit in result.hits],
            "retrieved": [hit.source_path for hit in result.hits],
        }

    async def _supervise(self, spec: AgentSpec, text: str, model: Model, trace: Trace) -> Any:
        from brickyard.agents.supervisor import supervise
        from brickyard.agents.tools import tools_for

        tools = tools_for(self, spec)
        result = await supervise(spec, text, model, tools, trace=trace)
        return result.text

    def close(self) -> None:
        """Nothing to release: the store belongs to the workspace (`ws.aclose()` closes it)."""


def _single(values: list[Any], errors: list[str | None]) -> Any:
    if errors[0] is not None:
        raise UserError(errors[0])
    return values[0]


async def transform(spec: AgentSpec, text: str, model: Model, *, demos: Sequence[Demo] | None = None) -> str:
    """Custom LLM: instructions, guidelines and few-shot examples applied to one input.

    Without `demos`, every example of the spec is shown (zero-shot when it has none).
    """
    system = (spec.system_rules() or "Transform the text as instructed.") + "\n" + DATA_RULE
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    if demos is None:
        demos = [Demo(e.input, e.output if isinstance(e.output, str) else json.dumps(e.output)) for e in spec.examples]
    for demo in demos:
        messages += [{"role": "user", "content": delimited(demo.input)}, {"role": "assistant", "content": demo.output}]
    messages.append({"role": "user", "content": delimited(text)})
    budget = min(4096, 2 * estimate_tokens(text) + 256)
    result = await model.complete(ChatRequest(messages=messages, temperature=0.0, max_tokens=budget))
    return result.text.strip()


class AgentModel(Model):
    """An agent seen as a model, so `ai_query('agent:NAME', input)` and the gateway can call it."""

    supports_json_schema = False

    def __init__(self, agents: Agents, name: str, *, owns_agents: bool = False) -> None:
        self._agents = agents
        self._owns = owns_agents
        self.agent = name
        self.name = f"agent:{name}"
        spec, _ = agents.store.get(name)  # fail early, with the list of agents, when it does not exist
        self.knowledge = spec.kind is AgentKind.knowledge
        """Answers carry citations (a knowledge assistant)."""
        self.max_concurrency = 4

    async def aclose(self) -> None:
        if self._owns:
            self._agents.close()

    async def handle(self, call: Call) -> Reply:
        """A chat call runs the agent for the call's caller; a stream gets the answer whole."""
        return await answer_whole(call, self.name, self._answer)

    async def _answer(self, request: ChatRequest, caller: Caller) -> ChatResult:
        request.check_not_empty()
        users = [m for m in request.messages if m.get("role") == "user"]
        text = str(users[-1].get("content", "")) if users else request.prompt_text()
        run = await self._agents.run(self.agent, text, caller=caller)
        output = run.output if isinstance(run.output, str) else json.dumps(run.output, ensure_ascii=False)
        return ChatResult(
            text=output,
            model=self.name,
            usage=Usage(run.trace.input_tokens, run.trace.output_tokens),
            latency_s=run.trace.latency_s,
            finish_reason="stop",
            json=run.output if not isinstance(run.output, str) else None,
            endpoint=self.name,
            cost_usd=run.trace.cost_usd,
        )


def _create_agent_model(name: str, host: Any) -> Model:
    agents = Agents(host)
    try:
        return AgentModel(agents, name, owns_agents=True)
    except UserError as exc:
        agents.close()
        raise UnknownEndpointError(str(exc)) from None


def _agent_names(host: Any) -> list[str]:
    agents = Agents(host)
    try:
        return agents.store.names()
    finally:
        agents.close()


NAMESPACE = NamespaceInfo(prefix="agent", create=_create_agent_model, names=_agent_names, kind="agent")
"""`agent:NAME` in the model registry: registered through the `brickyard.namespaces` entry point, as a plugin is."""
