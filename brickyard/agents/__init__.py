"""Agent bricks: declarative task agents (extract, classify, transform, knowledge, supervisor)."""

from brickyard.agents.runner import AgentModel, AgentRun, Agents
from brickyard.agents.spec import AgentKind, AgentSpec, OptimizationState, load_spec, parse_spec
from brickyard.agents.trace import Step, Trace

__all__ = [
    "AgentKind",
    "AgentModel",
    "AgentRun",
    "AgentSpec",
    "Agents",
    "OptimizationState",
    "Step",
    "Trace",
    "load_spec",
    "parse_spec",
]
