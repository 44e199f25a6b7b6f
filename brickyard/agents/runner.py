"""Running agents: one input or a whole column, each run traced and stored."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from brickyard._errors import BrickyardError, UserError
from brickyard.agents.spec import AgentKind, AgentSpec
from brickyard.agents.store import AgentStore
from brickyard.agents.trace import Trace, TracingModel
from brickyard.functions import classify, extract
from brickyard.functions._rows import DATA_RULE, delimited, is_null
from brickyard.models._types import ChatRequest, ChatResult, Usage, estimate_tokens
from brickyard.models.base import Model
from brickyard.workspace import Workspace

AGENTS_DB = "agents.sqlite"


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

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    @cached_property
    def store(self) -> AgentStore:
        return AgentStore(self.workspace.path / AGENTS_DB)

    def create(self, spec: AgentSpec) -> int:
        """Save a spec; an existing agent gets a new version. Returns the version number."""
        return self.store.save(spec)

    def model_for(self, spec: AgentSpec) -> Model:
        return self.workspace.registry.get(spec.endpoint or self.workspace.settings.defaults.chat)

    async def run(self, name: str, text: str, *, version: int | None = None) -> AgentRun:
        """Run the agent on one input; the trace is stored whatever happens."""
        spec, number = self.store.get(name, version)
        trace = Trace(agent=name, version=number, input=text)
        started = time.perf_counter()
        try:
            trace.output = await self._dispatch(spec, text, trace)
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

    async def _dispatch(self, spec: AgentSpec, text: str, trace: Trace) -> Any:
        model = TracingModel(self.model_for(spec), trace)
        rules = spec.system_rules() or None
        if spec.kind is AgentKind.extract:
            assert spec.output_schema is not None
            outcome = await extract([text], spec.output_schema, model, instructions=rules, progress=False)
            return _single(outcome.values, outcome.errors)
        if spec.kind is AgentKind.classify:
            assert spec.labels is not None
            outcome = await classify(
                [text], spec.labels, model, instructions=rules, multilabel=spec.multilabel, progress=False
            )
            return _single(outcome.values, outcome.errors)
        if spec.kind is AgentKind.transform:
            return await transform(spec, text, model)
        if spec.kind is AgentKind.knowledge:
            return await self._knowledge(spec, text, model, trace)
        return await self._supervise(spec, text, model, trace)

    async def _knowledge(self, spec: AgentSpec, text: str, model: Model, trace: Trace) -> Any:
        from brickyard.knowledge.answer import answer
        from brickyard.knowledge.base import KnowledgeBase

        assert spec.knowledge_base is not None
        kb = KnowledgeBase(self.workspace, spec.knowledge_base)
        result = await answer(kb, text, model, k=spec.top_k, trace=trace)
        return {
            "answer": result.text,
            "citations": [dataclasses.asdict(c) for c in result.citations],
            "known": result.known,
        }

    async def _supervise(self, spec: AgentSpec, text: str, model: Model, trace: Trace) -> Any:
        from brickyard.agents.supervisor import supervise
        from brickyard.agents.tools import tools_for

        tools = tools_for(self, spec)
        result = await supervise(spec, text, model, tools, trace=trace)
        return result.text

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def _single(values: list[Any], errors: list[str | None]) -> Any:
    if errors[0] is not None:
        raise UserError(errors[0])
    return values[0]


async def transform(spec: AgentSpec, text: str, model: Model) -> str:
    """Custom LLM: instructions, guidelines and few-shot examples applied to one input."""
    system = (spec.system_rules() or "Transform the text as instructed.") + "\n" + DATA_RULE
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for example in spec.examples:
        output = example.output if isinstance(example.output, str) else json.dumps(example.output)
        messages += [{"role": "user", "content": delimited(example.input)}, {"role": "assistant", "content": output}]
    messages.append({"role": "user", "content": delimited(text)})
    budget = min(4096, 2 * estimate_tokens(text) + 256)
    result = await model.complete(ChatRequest(messages=messages, temperature=0.0, max_tokens=budget))
    return result.text.strip()


class AgentModel(Model):
    """An agent seen as a model, so `ai_query('agent:NAME', input)` and the gateway can call it."""

    supports_json_schema = False

    def __init__(self, agents: Agents, name: str) -> None:
        self._agents = agents
        self.agent = name
        self.name = f"agent:{name}"
        agents.store.get(name)  # fail early, with the list of agents, when it does not exist
        self.max_concurrency = 4

    async def complete(self, request: ChatRequest) -> ChatResult:
        request.check_not_empty()
        users = [m for m in request.messages if m.get("role") == "user"]
        text = str(users[-1].get("content", "")) if users else request.prompt_text()
        run = await self._agents.run(self.agent, text)
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
