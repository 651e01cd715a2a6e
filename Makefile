# Two commands do all set-up on a fresh clone:  `make recover`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/tracking/mlflow.db

.PHONY: install recover test test-fast lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

recover: install
	@mkdir -p tracking
	. $(VENV)/bin/activate && mlflow run . -e recover --env-manager local \
		--experiment-name default-world

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not service"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/probe_objective.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
