"""Agent specs and run traces: moved to `brickyard.store.agents` (the workspace owns the file, see
`Workspace.agent_store`); re-exported here so old imports work."""

from brickyard.store.agents import AgentStore

__all__ = ["AgentStore"]
