# The project's own set-up: everything is installed from pyproject.toml into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080

.PHONY: install serve worker test lint pytest clean

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

## Lint, type-check and run every test (what CI runs)
test: install lint pytest

lint: install
	$(VENV)/bin/ruff check service schemas tests
	$(VENV)/bin/mypy service schemas

pytest: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) finetune-data .pytest_cache .mypy_cache .ruff_cache
