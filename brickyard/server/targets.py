"""What a request's `model` names, for a caller: the registry's resolver on the `served` surface plus the
key's scopes. Raw provider ids (`openai:gpt-5`, `function:module:fn`) are not served over HTTP: only what
brickyard.toml defines (with its price, limits and budgets) and registered namespaces (`agent:NAME`).
"""

from __future__ import annotations

from brickyard._errors import UnknownEndpointError, UserError
from brickyard.models.registry import Registry, Surface, Target
from brickyard.server.auth import Principal
from brickyard.server.errors import APIError

__all__ = ["Target", "Targets"]


class Targets:
    """Resolves names for one server, checking the caller's scopes before anything is built."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def resolve(self, name: str, principal: Principal) -> Target:
        """The target for `name`, or a 400/403/404/503 `APIError`."""
        if not principal.allows(name, self.canonical(name)):
            raise self.forbidden(name, principal)
        try:
            return self._registry.resolve(name, Surface.served)
        except UnknownEndpointError as exc:
            raise APIError(
                404, f"the model `{name}` does not exist: {exc}", "invalid_request_error", "model_not_found", "model"
            ) from None

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

    def names(self) -> list[tuple[str, str]]:
        """Every servable name with its kind (endpoint, alias, agent)."""
        return self._registry.served_names()

    def canonical(self, name: str) -> str | None:
        try:
            return self._registry.canonical(name)
        except UserError:
            return None
