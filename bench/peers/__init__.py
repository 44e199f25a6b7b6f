"""Helper processes for the gateway benchmark: a fast fake upstream, the wrk script, a LiteLLM config."""
