"""Resolves endpoint names to model stacks: provider model wrapped in the gateway behaviours.

Model ids are `provider:name`, parsed here and only here. Providers come from the
`brickyard.providers` entry points (built-ins register the same way a plugin does).
"""

from __future__ import annotations

import difflib
import enum
import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brickyard._errors import MissingKeyError, UnknownEndpointError, UserError
from brickyard.config import EndpointConfig, Settings
from brickyard.models.base import Model
from brickyard.models.budget import BudgetedModel, Budgets, Price
from brickyard.models.cache import CachedModel
from brickyard.models.cascade import CascadeModel
from brickyard.models.guardrails import GuardrailModel
from brickyard.models.limits import CallerRateModel, LimitedModel, OutputDefaultModel, PacedModel, RateLimiter
from brickyard.models.metering import MeteredModel
from brickyard.models.payloads import PayloadLogModel
from brickyard.models.provider import NamespaceInfo, ProviderInfo, ProviderSpec
from brickyard.models.retry import RetryModel
from brickyard.models.routing import FallbackModel, SplitModel
from brickyard.store.base import Store
from brickyard.store.payloads import PayloadLog

ENTRY_POINT_GROUP = "brickyard.providers"
NAMESPACE_GROUP = "brickyard.namespaces"


class Surface(enum.Enum):
    """Who asks for a name. `local` (the CLI, Python, in-process SQL) may name anything, model ids included;
    `served` (HTTP, the SQL API) only what brickyard.toml defines and registered namespaces (`agent:NAME`):
    a `function:` id would import and call any module, an `openai:` id would run unpriced."""

    local = "local"
    served = "served"


@dataclass(frozen=True)
class Target:
    """A resolved name: the model stack to call, its canonical name, price and kind."""

    name: str
    canonical: str
    model: Model
    price: Price
    kind: str
    """`endpoint`, `alias`, `model` (a `provider:name` id) or a namespace's kind (`agent`)."""

    @property
    def namespaced(self) -> bool:
        """A namespace's model (an agent): called whole, with no model parameters."""
        return self.kind not in ("endpoint", "alias", "model")

    @property
    def knowledge(self) -> bool:
        """Answers carry citations (a knowledge assistant agent)."""
        return bool(getattr(self.model, "knowledge", False))


def parse_model_id(model_id: str) -> tuple[str, str]:
    """Split `provider:name` (the name may itself contain colons or a path)."""
    provider, sep, name = model_id.partition(":")
    if not sep or not provider or not name:
        raise UserError(f"`{model_id}` is not a model id. Fix: write it as `provider:name`, e.g. `openai:gpt-5-mini`")
    return provider, name


def discover_namespaces() -> dict[str, NamespaceInfo]:
    """Every namespace registered under the `brickyard.namespaces` entry point group."""
    found: dict[str, NamespaceInfo] = {}
    for entry in importlib.metadata.entry_points(group=NAMESPACE_GROUP):
        info = entry.load()
        if isinstance(info, NamespaceInfo):
            found[info.prefix] = info
    return found


def discover_providers() -> dict[str, ProviderInfo]:
    """Every provider registered under the `brickyard.providers` entry point group."""
    found: dict[str, ProviderInfo] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        info = entry.load()
        if isinstance(info, ProviderInfo):
            found[info.name] = info
    return found


class Registry:
    """Builds (once) and hands out the model stack for each endpoint name, alias or model id."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        models_dir: Path,
        env: Mapping[str, str] | None = None,
        providers: Mapping[str, ProviderInfo] | None = None,
        cache: bool = True,
        source: str = "brickyard.toml",
        payloads: PayloadLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.models_dir = models_dir
        self.cache_enabled = cache
        self.source = source
        self._env = env if env is not None else os.environ
        self._providers = dict(providers) if providers is not None else None
        self._models: dict[str, Model] = {}
        self._served: dict[str, Model] = {}  # what `get` hands out: the stack plus payload logging
        self.payloads = payloads
        """Where every call made through `get` is logged (request and response); None: not logged."""
        self._prebuilt: dict[str, Model] = {}
        self._extra_configs: dict[str, EndpointConfig] = {}
        self.budgets = Budgets(store, settings.budgets)
        self.host: Any = None
        """What namespaces build their models from (the workspace); set by the workspace."""
        self._namespaces: dict[str, NamespaceInfo] | None = None
        self._namespaced: dict[str, Model] = {}
        self._targets: dict[tuple[str, Surface], Target] = {}
        self.gateway_base_url: str | None = None
        """When set, a name that is not configured here is an endpoint of this OpenAI-compatible gateway."""
        self.gateway_key_env: str | None = None

    # -- names ----------------------------------------------------------------------------------
    @property
    def providers(self) -> dict[str, ProviderInfo]:
        if self._providers is None:
            self._providers = discover_providers()
        return self._providers

    @property
    def namespaces(self) -> dict[str, NamespaceInfo]:
        if self._namespaces is None:
            self._namespaces = discover_namespaces()
        return self._namespaces

    def resolve(self, name: str, surface: Surface = Surface.local) -> Target:
        """The one place a name becomes a model: an endpoint, an alias, `provider:model` (local surfaces only)
        or a registered namespace (`agent:NAME`). Resolved once per name and surface (the hot path)."""
        target = self._targets.get((name, surface))
        if target is None:
            target = self._targets[(name, surface)] = self._resolve(name, surface)
        return target

    def _resolve(self, name: str, surface: Surface) -> Target:
        prefix, sep, rest = name.partition(":")
        namespace = self.namespaces.get(prefix) if sep else None
        if namespace is not None:
            model = self._namespaced.get(name)
            if model is None:
                model = self._namespaced[name] = namespace.create(rest, self.host)
            return Target(name, name, model, Price(), namespace.kind or prefix)
        canonical = self.canonical(name)
        configured = canonical in self.endpoint_names()
        if surface is Surface.served and not configured:
            known = ", ".join(sorted({*self.endpoint_names(), *self.settings.aliases})) or "none"
            hint = "model ids (`provider:name`) are not served; " if ":" in canonical else ""
            raise UnknownEndpointError(
                f"`{name}` is not an endpoint of this server; {hint}Fix: name an endpoint, an alias or agent:NAME "
                f"(endpoints: {known})"
            )
        kind = "alias" if name in self.settings.aliases else ("endpoint" if configured else "model")
        return Target(name, canonical, self.get(canonical), self.price(canonical), kind)

    def served_names(self) -> list[tuple[str, str]]:
        """Every name a `served` surface may resolve, with its kind (endpoint, alias, or a namespace's kind)."""
        out = [(n, "endpoint") for n in self.endpoint_names()]
        out += [(a, "alias") for a in sorted(self.settings.aliases)]
        for prefix, namespace in sorted(self.namespaces.items()):
            out += [(f"{prefix}:{n}", namespace.kind or prefix) for n in namespace.names(self.host)]
        return out

    def endpoint_names(self) -> list[str]:
        return sorted({*self.settings.endpoints, *self._extra_configs})

    def canonical(self, name: str) -> str:
        """Follow aliases to an endpoint name or a model id."""
        seen: list[str] = []
        while name in self.settings.aliases:
            if name in seen:
                raise UserError(f"aliases loop: {' -> '.join([*seen, name])}. Fix: break the cycle in [aliases]")
            seen.append(name)
            name = self.settings.aliases[name]
        return name

    def config_for(self, name: str) -> EndpointConfig:
        name = self.canonical(name)
        if name in self._extra_configs:
            return self._extra_configs[name]
        if name in self.settings.endpoints:
            return self.settings.endpoints[name]
        if ":" in name:
            parse_model_id(name)
            return EndpointConfig(model=name)
        if self.gateway_base_url:
            key_env = self.gateway_key_env if self.gateway_key_env and self.gateway_key_env in self._env else None
            return EndpointConfig(
                model=f"openai:{name}", base_url=self.gateway_base_url, api_key_env=key_env, cache=False
            )
        known = [*self.endpoint_names(), *self.settings.aliases]
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownEndpointError(
            f"unknown endpoint `{name}`. {hint}Fix: define [endpoints.{name}] in {self.source}, "
            f"or use a model id like `openai:gpt-5-mini` (known: {', '.join(known) or 'none'})"
        )

    def price(self, name: str) -> Price:
        config = self.config_for(name)
        if config.cascade is not None:  # at most: the proxy and the strong model both answer a row
            proxy, strong = self.price(config.cascade.proxy), self.price(config.cascade.strong)
            return Price(proxy.input_per_1m + strong.input_per_1m, proxy.output_per_1m + strong.output_per_1m)
        if config.route is not None:  # at most: the dearest candidate
            prices = [self.price(c) for c in config.route.candidates]
            return Price(max(p.input_per_1m for p in prices), max(p.output_per_1m for p in prices))
        return Price(config.price_input_per_1m, config.price_output_per_1m)

    # -- building -------------------------------------------------------------------------------
    def register(self, name: str, model: Model, config: EndpointConfig | None = None) -> Model:
        """Serve an already-built model (e.g. a `FakeModel`) as endpoint `name`, with every wrapper.

        Without `config`, the endpoint's configuration in brickyard.toml (if any) still applies.
        """
        self._prebuilt[name] = model
        if config is None:  # keep the endpoint's configured price, limits and fallbacks, if any
            known = self._extra_configs.get(name) or self.settings.endpoints.get(name)
            config = known or EndpointConfig(model=model.name if ":" in model.name else f"x:{name}")
        self._extra_configs[name] = config
        self._models.pop(name, None)
        self._served.pop(name, None)
        self._targets.clear()
        return self.get(name)

    def get(self, name: str) -> Model:
        """The full model stack for an endpoint, alias or model id."""
        name = self.canonical(name)
        if name not in self._served:
            model = self._get(name, ())
            if self.payloads is not None:  # logged once, as the endpoint asked for (not again per fallback)
                guard = model.guard if isinstance(model, GuardrailModel) else None
                model = PayloadLogModel(model, self.payloads, endpoint=name, guard=guard, secrets=self._secrets())
            # The caller's (API key's) requests and tokens per minute: checked once per call, before anything.
            self._served[name] = CallerRateModel(model, self.store)
        return self._served[name]

    def _get(self, name: str, building: tuple[str, ...]) -> Model:
        name = self.canonical(name)
        if name in building:
            raise UserError(f"endpoints refer to each other in a loop: {' -> '.join([*building, name])}")
        if name not in self._models:
            model = self._build(name, building)
            guardrails = self.config_for(name).guardrails
            if guardrails.active:  # outermost: covers the fallbacks; the cache inside sees masked requests
                model = GuardrailModel(model, guardrails, endpoint=name)
            self._models[name] = model
        return self._models[name]

    def _build(self, name: str, building: tuple[str, ...]) -> Model:
        config = self.config_for(name)
        building = (*building, name)
        if config.split is not None:
            parts = [(weight, self._get(target, building)) for target, weight in config.split.items()]
            return SplitModel(parts, name=name)
        if config.route is not None:
            from brickyard.models.commitment_route import CommitmentChooser, CommitmentRouteModel

            routes = [(target, self._get(target, building)) for target in config.route.candidates]
            chooser = CommitmentChooser(name, config.route, self.settings, self.store, self._latest_evaluation)
            return CommitmentRouteModel(routes, chooser, name=name)
        if config.cascade is not None:
            c = config.cascade
            proxy, strong = self._get(c.proxy, building), self._get(c.strong, building)
            return CascadeModel(proxy, strong, c.threshold, name=name, confidence=c.confidence, samples=c.samples)
        price = Price(config.price_input_per_1m, config.price_output_per_1m)
        model: Model = self._prebuilt.get(name) or self._provider_model(name, config)
        if config.rpm or config.tpm:  # shared by every process using the store
            model = PacedModel(model, RateLimiter(self.store, f"endpoint:{name}", rpm=config.rpm, tpm=config.tpm))
        model = RetryModel(model, max_retries=config.max_retries)
        # One reservation per call at this endpoint's price (a fallback endpoint reserves at its own).
        model = BudgetedModel(model, self.budgets, endpoint=name, price=price, default_max_tokens=config.max_tokens)
        if config.cache and self.cache_enabled:
            model = CachedModel(model, self.store, endpoint=name)
        model = MeteredModel(model, self.store, endpoint=name, price=price)
        # The endpoint's concurrency cap sits outside metering: a slot is held from the budget check until
        # the usage is recorded, so a budget check sees every finished call and overshoot is bounded by the
        # calls in flight. Pacing sits inside the retries, so every attempt is paced.
        model = LimitedModel(model, max_concurrency=config.max_concurrency)
        if config.fallbacks:
            model = FallbackModel([model, *(self._get(f, building) for f in config.fallbacks)], name=name)
        if config.max_tokens:  # outermost: the cache key, the budget and the upstream (fallbacks too) see it
            model = OutputDefaultModel(model, config.max_tokens)
        return model

    def _latest_evaluation(self, agent: str) -> dict[str, Any] | None:
        """The agent's latest evaluation record (what a commitment route's equivalence comes from)."""
        store = getattr(self.host, "eval_store", None)
        return store.latest_run(agent) if store is not None else None

    def spec_for(self, name: str, config: EndpointConfig) -> tuple[ProviderInfo, ProviderSpec]:
        assert config.model is not None
        provider_name, model_name = parse_model_id(config.model)
        info = self.providers.get(provider_name)
        if info is None:
            raise UserError(
                f"endpoint {name}: no provider `{provider_name}`. Fix: use one of {sorted(self.providers)} "
                "or install the plugin that provides it"
            )
        key_env = config.api_key_env or info.key_env
        api_key = self._env.get(key_env) if key_env else None
        options = dict(config.options)
        if provider_name == "local":
            local = self.settings.local
            options.setdefault("parallel", local.parallel)
            options.setdefault("context_per_slot", local.context_per_slot)
            options.setdefault("threads", local.threads)
            options.setdefault("deterministic", local.deterministic)
            options.setdefault("share_host", local.share_host)
            options.setdefault("prompt_cache_mib", local.prompt_cache_mib)
        if config.max_concurrency:
            options.setdefault("max_concurrency", config.max_concurrency)
        spec = ProviderSpec(
            provider=provider_name,
            model=model_name,
            endpoint=name,
            api_key=api_key or None,
            base_url=config.base_url,
            timeout_s=config.timeout_s,
            models_dir=self.models_dir,
            options=options,
        )
        return info, spec

    def _provider_model(self, name: str, config: EndpointConfig) -> Model:
        info, spec = self.spec_for(name, config)
        needs_key = config.api_key_env is not None or (info.key_env is not None and config.base_url is None)
        if needs_key and spec.api_key is None:
            variable = config.api_key_env or info.key_env
            raise MissingKeyError(
                f"endpoint {name} needs an API key in ${variable}, which is not set. "
                f"Fix: export {variable}=... (or change `api_key_env` under [endpoints.{name}] in {self.source})"
            )
        return info.create(spec)

    def readiness(self, name: str) -> str | None:
        """None when the endpoint can be used now, else why not (missing key, weights not pulled)."""
        try:
            config = self.config_for(name)
            parts = [*(config.split or {}), *((config.cascade.proxy, config.cascade.strong) if config.cascade else ())]
            parts += config.route.candidates if config.route else []
            if parts:
                reasons = [r for t in parts if (r := self.readiness(t))]
                return "; ".join(reasons) or None
            info, spec = self.spec_for(name, config)
        except UserError as exc:
            return str(exc)
        variable = config.api_key_env or info.key_env
        needs_key = config.api_key_env is not None or (info.key_env is not None and config.base_url is None)
        if needs_key and spec.api_key is None:
            return f"no key (${variable})"
        return info.is_ready(spec)

    async def aclose(self) -> None:
        for model in [*self._models.values(), *self._namespaced.values()]:
            await model.aclose()
        self.budgets.close()
        self._models.clear()
        self._served.clear()
        self._namespaced.clear()
        self._targets.clear()

    def _secrets(self) -> list[str]:
        """The values of every key variable the endpoints and providers read: never written to payload logs."""
        configs = [*self.settings.endpoints.values(), *self._extra_configs.values()]
        names = {c.api_key_env for c in configs} | {info.key_env for info in self.providers.values()}
        names |= {self.gateway_key_env}
        return [value for n in names if n and (value := self._env.get(n))]
