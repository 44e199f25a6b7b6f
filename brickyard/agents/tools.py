"""The tools a supervisor may use: its sub-agents (by their descriptions) and the read-only SQL tool."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from brickyard._errors import UserError
from brickyard.agents.spec import AgentSpec
from brickyard.agents.sql_tool import SQLTool
from brickyard.agents.supervisor import FunctionTool, SQLToolAdapter, Tool
from brickyard.agents.trace import Trace

if TYPE_CHECKING:
    from brickyard.agents.runner import Agents


def tools_for(agents: Agents, spec: AgentSpec) -> list[Tool]:
    """Sub-agents become tools named after them; `tools = ["sql"]` adds the SQL tool over `spec.tables`."""
    tools: list[Tool] = []
    for name in spec.agents:
        sub, _ = agents.store.get(name)
        if sub.kind.value == "supervisor":
            raise UserError(f"supervisor {spec.name} cannot route to another supervisor ({name})")
        tools.append(FunctionTool(name, sub.description or f"{sub.kind.value} agent {name}", _runner(agents, name)))
    if "sql" in spec.tools:
        database = agents.workspace.warehouse_path
        tools.append(SQLToolAdapter(SQLTool(database, spec.tables, agents.model_for(spec))))
    return tools


def _runner(agents: Agents, name: str) -> Any:
    async def run(text: str, trace: Trace | None) -> str:
        result = await agents.run(name, text)
        if trace is not None:
            trace.add("agent", name, run_id=result.run_id)
        output = result.output
        return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)

    return run
