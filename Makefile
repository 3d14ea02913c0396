# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create the environment in .venv/ from the pinned lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Portable llama.cpp binaries (the wheel is built from source and cached by pip).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# litellm otherwise fetches its cost map from the network at import time.
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: venv sysdeps demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-input -r requirements.lock
	$(BIN)/pip install --quiet --no-input --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# LibreOffice (spreadsheet scoring) and the sandbox's world-readable Python; idempotent.
sysdeps:
	bash scripts/install_system_deps.sh

demo: venv
	@bash scripts/demo.sh

test: venv sysdeps
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python benchmarks/git_store.py
	$(BIN)/python benchmarks/llm_gateway.py
	$(BIN)/python benchmarks/patch_engine.py
	$(BIN)/python benchmarks/sandbox.py
	$(BIN)/python benchmarks/evolve.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
