"""`ai_query(..., modelParameters => {'batch': true})` and `brickyard sql --batch`: a chunk of rows through a
provider batch job, blocking until it is done or its deadline passes (the rows left then go directly).

The SQL binding calls `batch_query` in place of the interactive path; everything else lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from brickyard._errors import InvalidRequestError
from brickyard.batch_api.jobs import BatchJobs
from brickyard.functions._rows import Outcome, is_null
from brickyard.functions.query import model_options
from brickyard.functions.schema import conformance_error, parse_response_format
from brickyard.models._types import ChatRequest
from brickyard.models.budget import CostCap
from brickyard.workspace import Workspace

BATCH_KEYS = ("batch", "batch_deadline_s")
"""modelParameters that choose the batch path: `batch` (true) and `batch_deadline_s` (seconds, then direct)."""


def _parameters(raw: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}  # the interactive path reports the malformed parameters
    return dict(raw) if isinstance(raw, Mapping) else {}


def wants_batch(raw: Mapping[str, Any] | str | None) -> bool:
    """True when modelParameters ask for the batch path (`'batch': true`)."""
    value = _parameters(raw).get("batch")
    if value is None or isinstance(value, bool):
        return bool(value)
    raise InvalidRequestError(f"ai_query: modelParameters `batch` must be true or false, not {value!r}")


def without_batch(raw: Mapping[str, Any] | str | None) -> Mapping[str, Any] | str | None:
    """modelParameters with the batch keys removed (for the interactive path and estimates)."""
    params = _parameters(raw)
    if not any(k in params for k in BATCH_KEYS):
        return raw
    return {k: v for k, v in params.items() if k not in BATCH_KEYS}


async def batch_query(
    workspace: Workspace,
    endpoint: str,
    prompts: Sequence[str | None],
    model_parameters: Mapping[str, Any] | str | None,
    response_format: str | None,
    *,
    tag: str = "sql",
    poll_s: float = 30.0,
    cap: CostCap | None = None,
) -> Outcome[str]:
    """`ai_query` over `prompts` through one batch job: the answer (or JSON text) per row, errors per row."""
    params = _parameters(model_parameters)
    deadline = params.get("batch_deadline_s")
    if deadline is not None and (not isinstance(deadline, int | float) or isinstance(deadline, bool) or deadline <= 0):
        raise InvalidRequestError(f"ai_query: batch_deadline_s must be a positive number of seconds, not {deadline!r}")
    options = model_options(without_batch(params))
    schema = parse_response_format(response_format)
    live = [(i, str(p)) for i, p in enumerate(prompts) if not is_null(p) and str(p).strip()]
    values: list[str | None] = [None] * len(prompts)
    errors: list[str | None] = [None] * len(prompts)
    if not live:
        return Outcome(values, errors)
    requests = [ChatRequest.from_prompt(p, json_schema=schema, tag=tag, **options) for _, p in live]
    jobs = BatchJobs(workspace, poll_s=poll_s)
    # the same rows again (a query re-run after a crash or Ctrl-C) resume or read the job already submitted
    job_id = await jobs.submit(
        endpoint, requests, tag=tag, deadline_s=float(deadline) if deadline else None, reuse=True, cap=cap
    )
    await jobs.run(job_id)
    for (index, _), row in zip(live, jobs.results(job_id), strict=True):
        if row.state != "ok":
            errors[index] = f"ai_query: {row.error or 'no answer'} (batch job {job_id})"
        elif schema is not None:
            problem = conformance_error(schema, row.json)  # as the interactive path: that row's error
            if problem:
                errors[index] = f"ai_query: {problem} (batch job {job_id})"
            else:
                values[index] = json.dumps(row.json, ensure_ascii=False)
        else:
            values[index] = row.text
    return Outcome(values, errors)
