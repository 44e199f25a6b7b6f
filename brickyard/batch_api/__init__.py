"""Provider batch APIs: many rows for a remote endpoint at the batch price (OpenAI Batch API, Anthropic Message
Batches), with durable job state in the workspace, resume after a crash, per-row errors and a deadline.

Not to be confused with `brickyard.batch`, the engine that runs rows as interactive calls.
"""

from brickyard.batch_api._providers import PROVIDERS_WITH_BATCH, provider_for
from brickyard.batch_api.jobs import BatchJobs, JobStatus, RowResult, batch_price

__all__ = ["PROVIDERS_WITH_BATCH", "BatchJobs", "JobStatus", "RowResult", "batch_price", "provider_for"]
