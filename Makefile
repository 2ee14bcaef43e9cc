# Two entry points (see README): `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv on first use. torch is installed first and pinned to 2.13.0 so pip
# takes the CPU build instead of resolving a newer (CUDA) one.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup repro test bench results results-table clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(BIN)/pip install --quiet -e '.[test]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest

# speed and memory figures into metrics/bench.json (~15 min; e.g. BENCH_ARGS="--skip ingest")
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

# the results table: run every experiment of results.yaml that is missing on this commit (dvc repro,
# then one `dvc exp run --temp` each; about 2 h on a 2-core CPU from scratch, docs/results.md), then
# write metrics/results.{md,json,png}. results-table only writes the table from what has been run.
results: $(STAMP)
	$(BIN)/python -m tinynewsrec.results run
	$(BIN)/python -m tinynewsrec.results build

results-table: $(STAMP)
	$(BIN)/python -m tinynewsrec.results build

clean:
	rm -rf $(VENV)
