"""Commitment-aware routing: among endpoints the evaluator found equivalent, use the commitment most behind.

A `route = { by = "commitments", candidates = [...], agent = "NAME" }` endpoint sends each call to its first
candidate, unless the agent's latest evaluation found several candidates equivalent to its best (the
`equivalence` of the choice record, same strategy as the chosen one) and one of those has a commitment that
is behind schedule: then the one most behind (as a fraction of its amount) takes the traffic. The decision
is re-made every `refresh_s` seconds (on the injected clock) and travels on the call as a `RouteNote`, so
the usage record of the endpoint that serves says which route asked for it and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from brickyard.commitments import active_commitment, burn_down
from brickyard.config import Settings
from brickyard.config_commitments import RouteConfig, covered_endpoints
from brickyard.models.base import Model, copy_capabilities
from brickyard.models.calls import Call, Reply, RouteNote
from brickyard.models.routing import falls_through, joint_capabilities
from brickyard.store.base import Store

Evidence = Callable[[str], "dict[str, Any] | None"]
"""The latest evaluation record of an agent (as `brickyard eval run` stores it), or None."""


@dataclass(frozen=True)
class Decision:
    """Where calls go until the next refresh, and why."""

    chose: str
    reason: str
    behind: dict[str, float]
    """Each equivalent candidate with an active commitment: how far behind schedule (fraction of its amount)."""


def equivalent_endpoints(record: Mapping[str, Any]) -> set[str]:
    """The endpoints whose candidate (with the chosen candidate's strategy) is the best or was shown
    equivalent to it in this evaluation record; empty when the evaluation tested no equivalence."""
    listed = record.get("candidates")
    candidates = {
        c["id"]: c["endpoint"]
        for c in (listed if isinstance(listed, list) else [])
        if isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("endpoint"), str)
    }
    found = record.get("equivalence")
    tests = {k: t for k, t in found.items() if isinstance(t, dict)} if isinstance(found, dict) else {}
    best = next((t["best"] for t in tests.values() if isinstance(t.get("best"), str)), None)
    if best is None:  # no equivalence was tested (another policy, or a single candidate)
        return set()
    pool = {best, *(cid for cid, t in tests.items() if t.get("equivalent") is True)}
    reference = record.get("chosen") or best

    def shape(cid: str) -> str | None:  # "/few-shot-3/v2": the strategy and variant, without the endpoint
        endpoint = candidates.get(cid)
        return cid[len(endpoint) :] if endpoint and cid.startswith(endpoint) else None

    return {candidates[cid] for cid in pool if cid in candidates and shape(cid) == shape(reference)}


class CommitmentChooser:
    """Decides which candidate of a route takes the traffic; thread-safe, cached for `refresh_s`."""

    def __init__(
        self,
        route: str,
        config: RouteConfig,
        settings: Settings,
        store: Store,
        evidence: Evidence,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.route, self.config, self.settings, self.store = route, config, settings, store
        self._evidence, self._clock = evidence, clock
        self._lock = threading.Lock()
        self._decision: Decision | None = None
        self._expires = -float("inf")

    def stale(self) -> bool:
        return self._clock() >= self._expires

    def decision(self) -> Decision:
        """The current decision, re-made when `refresh_s` has passed since the last."""
        with self._lock:
            now = self._clock()
            if self._decision is None or now >= self._expires:
                self._decision = self._decide(now)
                self._expires = now + self.config.refresh_s
            return self._decision

    def _decide(self, now: float) -> Decision:
        primary, agent = self.config.candidates[0], self.config.agent
        record = self._evidence(agent)
        if record is None:
            return Decision(primary, f"no evaluation of agent {agent} yet: the first candidate serves", {})
        run = record.get("run_id", "?")
        if record.get("partial"):
            return Decision(primary, f"evaluation {run} of {agent} is partial: the first candidate serves", {})
        pool = equivalent_endpoints(record)
        eligible = [c for c in self.config.candidates if c in pool]
        if primary not in pool or len(eligible) < 2:
            others = ", ".join(self.config.candidates[1:])
            return Decision(
                primary, f"evaluation {run} of {agent} did not find {others} equivalent to {primary}: no move", {}
            )
        behind: dict[str, float] = {}
        names: dict[str, str] = {}
        for endpoint in eligible:
            commitment = active_commitment(self.settings, endpoint, now)
            if commitment is None:
                continue
            covered = covered_endpoints(commitment, self.settings.endpoints, self.settings.aliases)
            behind[endpoint] = burn_down(commitment, covered, self.store, now).behind_fraction
            names[endpoint] = commitment.name
        lagging = [e for e in eligible if behind.get(e, 0.0) > 0.0]
        if not lagging:
            return Decision(
                primary, f"no commitment of the equivalent endpoints ({', '.join(eligible)}) is behind schedule", behind
            )
        chose = max(lagging, key=lambda e: (behind[e], -eligible.index(e)))  # ties: the earlier candidate
        return Decision(
            chose,
            f"commitment {names[chose]} is {behind[chose]:.1%} behind schedule, the most of the endpoints "
            f"evaluation {run} of {agent} found equivalent ({', '.join(eligible)})",
            behind,
        )


class CommitmentRouteModel(Model):
    """Sends each call to the candidate the chooser picks, with the decision on the call. If that candidate
    fails the way a fallback would catch (429, 5xx, timeout, budget refusal, after its retries), the first
    candidate (the default) answers instead; a stream falls through only before its first piece."""

    def __init__(self, candidates: Sequence[tuple[str, Model]], chooser: CommitmentChooser, *, name: str) -> None:
        if len(candidates) < 2:
            raise ValueError("a route needs at least two candidates")
        self.name = name
        self.candidates = dict(candidates)
        self.chooser = chooser
        copy_capabilities(self, joint_capabilities(list(self.candidates.values())))

    async def handle(self, call: Call) -> Reply:
        # The decision reads the ledger: off the event loop, and only when it is due.
        decision = await asyncio.to_thread(self.chooser.decision) if self.chooser.stale() else self.chooser.decision()
        note = RouteNote(endpoint=self.name, chose=decision.chose, reason=decision.reason)
        routed = dataclasses.replace(call, route=note)
        primary = self.chooser.config.candidates[0]
        try:
            return await self.candidates[decision.chose].handle(routed)
        except Exception as exc:
            if decision.chose == primary or not falls_through(exc):
                raise
        return await self.candidates[primary].handle(routed)

    async def aclose(self) -> None:
        for model in self.candidates.values():
            await model.aclose()
