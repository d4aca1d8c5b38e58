# The project's own set-up: everything is installed from pyproject.toml into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: install serve worker test test-full lint lint-deploy pytest pytest-full image-test browser bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Start the embedded default: API on http://127.0.0.1:$(PORT) and one worker, state in ./finetune-data
serve: install
	$(PY) -m service serve --port $(PORT)

worker: install
	$(PY) -m service worker

## Lint, type-check, lint the deployment files and run the tests but the full matrix's (what CI runs)
test: install lint lint-deploy pytest

## The same with every test: the full matrix too (tests marked `full`), a few minutes more
test-full: install lint lint-deploy pytest-full

lint: install
	$(VENV)/bin/ruff check service schemas tests bench
	$(VENV)/bin/mypy service schemas

## YAML lint, Kubernetes manifests against the Kubernetes schema (offline), Dockerfile lint
lint-deploy: install
	$(VENV)/bin/yamllint -s deploy examples .yamllint.yaml
	$(VENV)/bin/kubernetes-validate --strict --quiet deploy/kubernetes/[!k]*.yaml
	$(VENV)/bin/hadolint Dockerfile

# --durations: each run's log says where its minutes went.
pytest: install
	$(PY) -m pytest -m "not full" --durations=25

pytest-full: install
	$(PY) -m pytest --durations=25

## Chromium for the /docs browser test (tests/api/test_docs_page.py); needs root and apt-get
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## The benchmarks of bench/ (about an hour on 2 cores); wrk and hey (API load) from Debian
bench: install
	@command -v wrk >/dev/null && command -v hey >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey >/dev/null; }
	$(PY) bench/run_all.py

## Build the Dockerfile for real with buildah on a debootstrapped Debian and check the image (slow)
image-test:
	scripts/image_test.sh

clean:
	rm -rf $(VENV) finetune-data .pytest_cache .mypy_cache .ruff_cache
