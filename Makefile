# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the test suite).
# Each installs what it needs into a local virtualenv (.venv) first; nothing else on the machine changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s2s-installed

.PHONY: setup demo test lint format clean

setup: $(STAMP)

# Re-run when the dependency list changes. torch (when a later step needs it) is installed with an exact
# pin first: `pip install torch==2.13.0` takes the local CPU build; anything looser drags in CUDA wheels.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "s2s needs Python >= 3.10"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $@

demo: setup
	$(BIN)/s2s doctor

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
