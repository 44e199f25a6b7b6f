"""Label scoring: the probability of each label's first token, calibrated against a content-free input.

Instead of letting a small model *generate* a label (it answers the majority label for almost every row),
the model is asked for one token with its top log-probabilities, and each label is scored by the
probability of the tokens that begin it (case-insensitive, with or without a leading space). The scores are
then calibrated (Zhao et al. 2021, "Calibrate before use"): the same prompt on content-free inputs
("N/A", "", "[MASK]") gives the model's prior over the labels, p_cf; a row's distribution p becomes
p / p_cf renormalised, so a constant bias toward one label no longer decides the answer. The chosen
label's calibrated probability is the row's confidence.

llama.cpp reports log-probabilities from the raw logits, before any grammar (checked: the same top tokens
with and without it), so the label grammar stays on the scoring request only so that endpoints that route
classification requests by their label set (cascades) still recognise it; the scores never rely on it.
Scoring runs on llama.cpp endpoints (`supports_logprobs` and `supports_grammar`), which also allow more
than the OpenAI limit of 20 alternatives: a very small model may put its label tokens below the top 20.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from brickyard.functions._rows import delimited
from brickyard.models._types import ChatRequest, ChatResult

MAX_SCORED_LABELS = 20
"""Label sets larger than this are classified by constrained generation instead."""
TOP_LOGPROBS = 20
"""Alternatives asked for through the portable `top_logprobs` field (the OpenAI maximum)."""
WIDE_TOP_LOGPROBS = 400
"""Alternatives asked for from llama.cpp, which has no limit of 20 (its cost is a little JSON)."""
CONTENT_FREE = ("N/A", "", "[MASK]")
"""Content-free inputs whose label distribution is the model's prior for the prompt."""
MIN_TOKEN_CHARS = 2
"""A token must cover this many characters of a label (or the whole label) to count for it: single
letters are mostly the model's habit of answering "A"/"B", not the start of a label."""
PREFILL = "Label:"
"""The start of the answer, given to llama.cpp as an assistant prefix so the next token is the label."""
AMBIGUOUS = "the labels share their first token"
NOT_IN_TOP = "no label among the model's most probable tokens"


@dataclass(frozen=True)
class Scored:
    """A row's label distribution (in label order, summing to 1) or the reason it could not be scored."""

    probabilities: tuple[float, ...] | None
    note: str | None = None
    own: bool = False
    """The model states its own confidence (an embedding classifier): its probabilities are not recalibrated."""


def unscorable(labels: Sequence[str], *, logprobs: bool, grammar: bool = True) -> str | None:
    """Why a label set cannot be scored on this model (None when it can)."""
    if not logprobs:
        return "the model reports no log-probabilities"
    if not grammar:
        return "label scoring runs on llama.cpp endpoints only"
    if len(labels) > MAX_SCORED_LABELS:
        return f"more than {MAX_SCORED_LABELS} labels"
    keys = [" ".join(label.lower().split()) for label in labels]
    firsts = [key.split(" ")[0] for key in keys]
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            if i != j and (b.startswith(a) or firsts[i] == firsts[j]):
                return f"labels {labels[i]!r} and {labels[j]!r} begin alike"
    return None


def scoring_request(request: ChatRequest, *, wide: bool) -> ChatRequest:
    """The request of a label-generation prompt turned into a one-token scoring request."""
    extra = dict(request.extra)
    messages = list(request.messages)
    if wide:  # llama.cpp: more alternatives, and the answer started so the next token is the label
        extra["top_logprobs"] = WIDE_TOP_LOGPROBS
        messages.append({"role": "assistant", "content": PREFILL})
    return request.model_copy(
        update={
            "messages": messages,
            "extra": extra,
            "max_tokens": 1,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
            "json_schema": None,
            "temperature": 0.0,
        }
    )


def content_free_requests(request: ChatRequest) -> list[ChatRequest]:
    """The same scoring request with the row's text replaced by each content-free input."""
    out = []
    for filler in CONTENT_FREE:
        messages = list(request.messages)
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        messages[last_user] = {**messages[last_user], "content": delimited(filler)}
        out.append(request.model_copy(update={"messages": messages}))
    return out


def score(result: ChatResult, labels: Sequence[str]) -> Scored:
    """The label distribution read off the first generated token's alternatives.

    Each alternative that begins exactly one label (ignoring case and surrounding spaces) adds its
    probability to that label. A label with no such alternative gets a floor: half the smallest listed
    probability (its true probability is below that). Alternatives that begin several labels are set
    aside; when they outweigh every label's own tokens, the row is not scored.
    """
    if not result.logprobs:
        return Scored(None, "the model returned no log-probabilities")
    top = dict(result.logprobs[0].top)
    first = result.logprobs[0]
    top.setdefault(first.token, first.logprob)
    lowered = [label.lower() for label in labels]
    mass = [0.0] * len(labels)
    shared = 0.0
    for token, logprob in top.items():
        piece = token.strip().lower()
        if not piece:
            continue
        hits = [
            i
            for i, label in enumerate(lowered)
            if label.startswith(piece) and len(piece) >= min(MIN_TOKEN_CHARS, len(label))
        ]
        if len(hits) == 1:
            mass[hits[0]] += math.exp(logprob)
        elif hits:
            shared += math.exp(logprob)
    if not any(mass):
        return Scored(None, AMBIGUOUS if shared else NOT_IN_TOP)
    if shared > max(mass):
        return Scored(None, AMBIGUOUS)
    floor = 0.5 * math.exp(min(top.values()))
    return Scored(normalise([m if m > 0 else floor for m in mass]), own=result.confidence is not None)


def normalise(values: Sequence[float]) -> tuple[float, ...]:
    total = sum(values)
    return tuple(v / total for v in values) if total > 0 else tuple(1.0 / len(values) for _ in values)


def prior(distributions: Sequence[tuple[float, ...] | None], size: int) -> tuple[float, ...] | None:
    """p_cf: the mean of the content-free distributions that could be scored (None when none could)."""
    known = [d for d in distributions if d is not None]
    if not known:
        return None
    return normalise([sum(d[i] for d in known) / len(known) for i in range(size)])


def calibrate(p: Sequence[float], p_cf: Sequence[float] | None) -> tuple[float, ...]:
    """Contextual calibration: p / p_cf, renormalised (p unchanged without a prior)."""
    if p_cf is None:
        return tuple(p)
    return normalise([pi / max(ci, 1e-12) for pi, ci in zip(p, p_cf, strict=True)])


def choose(p: Sequence[float], labels: Sequence[str]) -> tuple[str, float]:
    """The most probable label and its probability (ties go to the earlier label)."""
    best = max(range(len(labels)), key=lambda i: (p[i], -i))
    return labels[best], p[best]


def as_mapping(p: Sequence[float], labels: Sequence[str]) -> Mapping[str, float]:
    return dict(zip(labels, p, strict=True))
