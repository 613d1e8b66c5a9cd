# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the test suite).
# Each installs what it needs first: a local virtualenv (.venv) and the Debian packages listed below.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s2s-installed
# Debian packages: libb64-0d for perf_analyzer (benchmarks and their tests); chromium and its driver
# for the web page's browser test
DEB_PACKAGES := libb64-0d chromium chromium-driver

.PHONY: setup demo test lint format audit clean

setup: $(STAMP)

# Re-run when the dependency list changes. torch is installed first with an exact pin:
# `pip install torch==2.13.0` takes the local CPU build; anything looser drags in GBs of CUDA wheels.
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "s2s needs Python >= 3.10"'
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing Debian packages:" $$missing; \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[embedded,models,bench,gateway,dev]"
	touch $@

# The main job: export the networks into model_repository/ (seeded weights unless checkpoints are
# given), start the embedded Triton on it, and turn a generated sample video into a video with sound.
demo: setup
	$(BIN)/s2s export --model-repository model_repository
	$(BIN)/s2s demo --model-repository model_repository --output-dir outputs

test: setup lint
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Dependency advisories: pip-audit over the installed environment with PyPI's advisory data. --strict
# fails when a package cannot be audited (so an unreachable advisory service is a failure, not a pass);
# pip-audit-allow.txt lists what cannot be upgraded, one advisory id per line with its reason.
audit: setup
	$(BIN)/pip-audit --strict --progress-spinner off --skip-editable \
	  $$(sed -e 's/#.*//' -e '/^[[:space:]]*$$/d' pip-audit-allow.txt | awk '{print "--ignore-vuln", $$1}')

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
