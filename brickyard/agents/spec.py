"""Agent specs: a named, versioned, declarative description of a task agent."""

from __future__ import annotations

import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from brickyard._errors import ConfigError, UserError


class AgentKind(StrEnum):
    extract = "extract"
    classify = "classify"
    transform = "transform"
    knowledge = "knowledge"
    supervisor = "supervisor"


class OptimizationState(StrEnum):
    CREATED = "CREATED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Strategy(StrEnum):
    """How the prompt is built: no demonstrations, the k most similar examples, or reasoning first."""

    zero_shot = "zero_shot"
    few_shot = "few_shot"
    chain_of_thought = "chain_of_thought"


class Example(BaseModel):
    """A few-shot demonstration: an input and the output the agent should give."""

    model_config = ConfigDict(extra="forbid")

    input: str
    output: Any


class AgentSpec(BaseModel):
    """What an agent does, on which endpoint, over which data. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$", max_length=64)
    kind: AgentKind
    description: str = ""
    instructions: str = ""
    guidelines: list[str] = Field(default_factory=list, description="rules the output must follow")
    endpoint: str | None = Field(default=None, description="default: [defaults] chat")
    sources: list[str] = Field(default_factory=list, description="tables, folders or knowledge bases it reads")
    examples: list[Example] = Field(default_factory=list)
    strategy: Strategy = Field(default=Strategy.zero_shot, description="zero_shot, few_shot or chain_of_thought")
    few_shot_k: int = Field(default=3, ge=1, le=20, description="few_shot: demonstrations per input, by similarity")
    # extract
    output_schema: dict[str, Any] | None = None
    example_output: Any = None
    # classify
    labels: list[str] | dict[str, str] | None = None
    multilabel: bool = False
    # knowledge
    knowledge_base: str | None = None
    top_k: int = Field(default=5, ge=1, le=50)
    answer_mode: Literal["auto", "generative", "extractive"] = Field(
        default="auto",
        description="extractive quotes the best retrieved sentence; auto: extractive on small local models",
    )
    # supervisor
    agents: list[str] = Field(default_factory=list, description="sub-agents it may route to")
    tools: list[str] = Field(default_factory=list, description="built-in tools: sql")
    tables: list[str] = Field(default_factory=list, description="warehouse tables the sql tool may read")
    max_steps: int = Field(default=5, ge=1, le=20)
    optimization_state: OptimizationState = OptimizationState.CREATED
    evidence: dict[str, Any] = Field(default_factory=dict, description="written by the evaluator")

    @model_validator(mode="after")
    def _kind_needs(self) -> AgentSpec:
        if self.kind is AgentKind.extract and self.output_schema is None:
            if self.example_output is None:
                raise ValueError("an extract agent needs `output_schema` (JSON schema) or `example_output`")
            self.output_schema = schema_from_example(self.example_output)
        if self.kind is AgentKind.classify and not self.labels:
            raise ValueError("a classify agent needs `labels` (a list, or a table of label = description)")
        if self.kind is AgentKind.knowledge and not self.knowledge_base:
            raise ValueError("a knowledge agent needs `knowledge_base` (see `brickyard kb ingest`)")
        if self.kind is AgentKind.supervisor and not (self.agents or self.tools):
            raise ValueError('a supervisor needs `agents` to route to and/or `tools` (e.g. ["sql"])')
        if self.strategy is Strategy.chain_of_thought and self.kind is not AgentKind.classify:
            raise ValueError("strategy chain_of_thought is available for classify agents")
        if self.strategy is Strategy.few_shot and not self.examples:
            raise ValueError("strategy few_shot needs `examples` to pick demonstrations from")
        unknown = set(self.tools) - {"sql"}
        if unknown:
            raise ValueError(f"unknown tools {sorted(unknown)}; available: sql")
        return self

    def system_rules(self) -> str:
        """Instructions and guidelines as one block for a system message."""
        parts = [self.instructions.strip()] if self.instructions.strip() else []
        if self.guidelines:
            parts.append("Guidelines:\n" + "\n".join(f"- {g}" for g in self.guidelines))
        return "\n".join(parts)


def schema_from_example(example: Any) -> dict[str, Any]:
    """A JSON schema of the example's shape (nested objects and arrays); absent values may be null."""
    if isinstance(example, dict):
        return {
            "type": "object",
            "properties": {key: schema_from_example(value) for key, value in example.items()},
            "required": list(example),
        }
    if isinstance(example, list):
        return {"type": "array", "items": schema_from_example(example[0]) if example else {"type": "string"}}
    if isinstance(example, bool):
        return {"type": ["boolean", "null"]}
    if isinstance(example, int):
        return {"type": ["integer", "null"]}
    if isinstance(example, float):
        return {"type": ["number", "null"]}
    return {"type": ["string", "null"]}


def load_spec(path: Path) -> AgentSpec:
    """Read a spec from YAML, TOML or JSON; errors name the file, the key and the fix."""
    if not path.exists():
        raise UserError(f"{path} does not exist. Fix: give the path of an agent spec (.yaml, .toml or .json)")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text)
        elif path.suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raw = json.loads(text)
    except Exception as exc:
        raise ConfigError(str(path), "(syntax)", f"cannot be parsed ({exc})", "correct the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "(top level)", "is not a mapping", "write the spec as key: value pairs")
    return parse_spec(raw, str(path))


def parse_spec(raw: dict[str, Any], source: str = "agent spec") -> AgentSpec:
    try:
        return AgentSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(spec)"
        fix = "remove it or check the spelling" if err["type"] == "extra_forbidden" else "see the README's Agent bricks"
        raise ConfigError(source, key, err["msg"], fix) from None
