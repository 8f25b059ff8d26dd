# Two entry points: `make demo` (the main job on the embedded demo data) and `make test` (the full suite, CI's
# command); `make test-fast` is the inner loop (no subprocess, no Prefect flow, no Dask cluster: markers slow, flow).
# Each creates or reuses .venv and installs the project into it.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_LOGGING_LEVEL ?= INFO
export PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL ?= WARNING
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false

# Both test targets spread test files over two processes (the machine's two cores; tests of one file stay together,
# and the services the tests start -- SLURM, S3, Prefect -- are per process or serialised), heaviest files first in
# the order tests/conftest.py gives (xdist's own reorder put the longest file last). PARALLEL= runs in one process.
PARALLEL ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: venv demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/declip demo --out demo-out $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PARALLEL) $(TEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not flow" $(PARALLEL) $(TEST_ARGS)

# The speed targets (bench/p*.py) and the grid's fixed cost per cell (bench/grid_cost.py, threads; add
# `--runners threads,slurm` by hand where the local SLURM of tests/cluster/slurm.sh can run). Measure alone.
bench: $(STAMP)
	for f in bench/p*.py bench/grid_cost.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf demo-out .prefect .pytest_cache
