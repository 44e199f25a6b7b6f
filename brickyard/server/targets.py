"""What a request's `model` names: a configured endpoint, an alias of one, or `agent:NAME`.

Raw provider ids (`openai:gpt-5`, `local:/path.gguf`, `function:module:fn`) are not served: over HTTP only
what `brickyard.toml` (or `Registry.register`) defines is reachable, with its price, limits and budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from brickyard._errors import UserError
from brickyard.agents.runner import AgentModel, Agents
from brickyard.agents.spec import AgentKind
from brickyard.models.base import Model
from brickyard.models.metering import Price
from brickyard.server.auth import Principal
from brickyard.server.errors import APIError
from brickyard.workspace import Workspace

AGENT_PREFIX = "agent:"


@dataclass(frozen=True)
class Target:
    """A resolved `model`: the stack to call, its price and, for agents, the agent's name."""

    name: str
    canonical: str
    model: Model
    price: Price
    agent: str | None = None
    knowledge: bool = False


def _not_found(name: str, detail: str) -> APIError:
    return APIError(
        404, f"the model `{name}` does not exist: {detail}", "invalid_request_error", "model_not_found", "model"
    )


class Targets:
    """Resolves names for one workspace, checking the caller's scopes; built stacks are reused."""

    def __init__(self, workspace: Workspace, agents: Agents) -> None:
        self._ws = workspace
        self._agents = agents
        self._endpoints: dict[str, Target] = {}
        self._agent_models: dict[str, AgentModel] = {}

    def resolve(self, name: str, principal: Principal) -> Target:
        """The target for `name`, or a 403/404/503 `APIError`."""
        if name.startswith(AGENT_PREFIX):
            return self._agent(name, principal)
        target = self._endpoints.get(name)
        if target is None:
            target = self._endpoint(name, principal)
            self._endpoints[name] = target
        elif not principal.allows(name, target.canonical):
            raise self.forbidden(name, principal)
        return target

    def forbidden(self, name: str, principal: Principal) -> APIError:
        scopes = ", ".join(principal.key.scopes) if principal.key else ""
        return APIError(
            403,
            f"key {principal.name} may not use `{name}` (it may use: {scopes}). Fix: ask an admin for a key "
            "whose --endpoints include it",
            "permission_error",
            "model_not_allowed",
            "model",
        )

    def _endpoint(self, name: str, principal: Principal) -> Target:
        registry = self._ws.registry
        try:
            canonical = registry.canonical(name)
        except UserError as exc:
            raise APIError(400, str(exc), code="invalid_value", param="model") from None
        if not principal.allows(name, canonical):
            raise self.forbidden(name, principal)
        if canonical not in registry.endpoint_names():
            known = sorted({*registry.endpoint_names(), *registry.settings.aliases})
            hint = "model ids (`provider:name`) are not served; " if ":" in canonical else ""
            raise _not_found(name, f"{hint}name an endpoint, an alias or agent:NAME (endpoints: {', '.join(known)})")
        model = registry.get(canonical)  # MissingKeyError / ModelNotPulledError → 503 by the error mapping
        config = registry.config_for(canonical)
        return Target(name, canonical, model, Price(config.price_input_per_1m, config.price_output_per_1m))

    def _agent(self, name: str, principal: Principal) -> Target:
        if not principal.allows(name):
            raise self.forbidden(name, principal)
        agent = name[len(AGENT_PREFIX) :]
        try:
            spec, _ = self._agents.store.get(agent)
        except UserError as exc:
            raise _not_found(name, str(exc)) from None
        model = self._agent_models.get(agent)
        if model is None:
            model = self._agent_models[agent] = AgentModel(self._agents, agent)
        return Target(name, name, model, Price(), agent=agent, knowledge=spec.kind is AgentKind.knowledge)

    def names(self) -> list[tuple[str, str]]:
        """Every servable name with its kind (endpoint, alias, agent)."""
        registry = self._ws.registry
        out = [(n, "endpoint") for n in registry.endpoint_names()]
        out += [(a, "alias") for a in sorted(registry.settings.aliases)]
        out += [(AGENT_PREFIX + agent, "agent") for agent in self._agents.store.names()]
        return out

    def canonical(self, name: str) -> str | None:
        try:
            return self._ws.registry.canonical(name)
        except UserError:
            return None
