"""brickyard: large language models next to your data."""

from brickyard._errors import (
    BrickyardError,
    BudgetExceededError,
    ConfigError,
    ContextWindowError,
    GuardrailError,
    InvalidRequestError,
    MalformedResponseError,
    MissingExtraError,
    MissingKeyError,
    ModelNotPulledError,
    ProviderError,
    RateLimitedError,
    ServerError,
    UnknownEndpointError,
    UpstreamTimeoutError,
    UserError,
)
from brickyard.batch import BatchEstimate, BatchReport, RowResult, estimate_batch, run_batch, run_batch_sync
from brickyard.models._types import ChatRequest, ChatResult, EmbeddingResult, TokenLogprob, Usage
from brickyard.models.base import Model, WrapperModel
from brickyard.models.testing import FakeModel, FunctionModel
from brickyard.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "BatchEstimate",
    "BatchReport",
    "BrickyardError",
    "BudgetExceededError",
    "ChatRequest",
    "ChatResult",
    "ConfigError",
    "ContextWindowError",
    "EmbeddingResult",
    "FakeModel",
    "FunctionModel",
    "GuardrailError",
    "InvalidRequestError",
    "MalformedResponseError",
    "MissingExtraError",
    "MissingKeyError",
    "Model",
    "ModelNotPulledError",
    "ProviderError",
    "RateLimitedError",
    "RowResult",
    "ServerError",
    "TokenLogprob",
    "UnknownEndpointError",
    "UpstreamTimeoutError",
    "Usage",
    "UserError",
    "Workspace",
    "WrapperModel",
    "estimate_batch",
    "run_batch",
    "run_batch_sync",
]
