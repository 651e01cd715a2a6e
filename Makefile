# Two commands do all set-up on a fresh clone:  `make recover`  and  `make test`.
# Tracking home: MLFLOW_TRACKING_URI if set (e.g. `source tracking/stack.env` after
# `make stack-up`), else tracking/mlflow.db with artifacts in tracking/artifacts/<experiment>.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/tracking/mlflow.db

.PHONY: install recover ui stack-up stack-down stack-status test test-fast lint bench clean mlproject docs docs-serve

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# the experiment is created first (artifacts in the home, experiment-kind tag): `mlflow run`
# would create it with artifacts in ./mlruns
recover: install
	@mkdir -p tracking
	$(PY) -m modelrecovery.tracking experiment default-world >/dev/null
	. $(VENV)/bin/activate && mlflow run . -e recover --env-manager local \
		--experiment-name default-world

# the local UI on its own port (5001; UI_PORT=... or $$MODELRECOVERY_UI_PORT), checked first:
# the team stack's MLflow server has 5000
ui: install
	$(PY) -m modelrecovery.tracking ui $(if $(UI_PORT),--port $(UI_PORT))

stack-up: install
	$(PY) -m modelrecovery.stack up

stack-down: install
	$(PY) -m modelrecovery.stack down

stack-status: install
	$(PY) -m modelrecovery.stack status

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not service"

# MLproject is generated from the command line (its defaults are the options' defaults)
mlproject: install
	$(PY) -m modelrecovery.cli.mlproject > MLproject

# the documentation site, warnings as errors (a broken link or a missing page fails)
docs: export NO_MKDOCS_2_WARNING = 1
docs: install
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir site

docs-serve: export NO_MKDOCS_2_WARNING = 1
docs-serve: install
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

lint: install
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: install
	$(PY) benchmarks/probe_objective.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
