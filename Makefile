# The two README commands: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test clean graphene-data

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/sagesnet-tf build graphene --nx 6 --ny 4 --out run/demo/graphene.extxyz
	$(BIN)/sagesnet-tf generate md --structure run/demo/graphene.extxyz --protocol nvt \
		--temperature 300 --dt-fs 1 --steps 500 --record-every 50 --out run/demo/md --overwrite

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) run .pytest_cache

# Training data for the default graphene model (reproducible: fixed seeds; not committed):
# a 240-atom periodic sheet, NVT at five temperatures, 6 ps each, recorded every 2 fs (the model's Δ).
GRAPHENE_DATA ?= data/graphene
MD_THREADS ?= 1
graphene-data: setup
	$(BIN)/sagesnet-tf build graphene --nx 10 --ny 6 --out $(GRAPHENE_DATA)/sheet_10x6.extxyz
	for T in 4.2 100 300 600 1000; do \
	  $(BIN)/sagesnet-tf generate md --structure $(GRAPHENE_DATA)/sheet_10x6.extxyz --protocol nvt \
	    --temperature $$T --dt-fs 1 --steps 6000 --record-every 2 --threads $(MD_THREADS) \
	    --seed 1$${T%.*} --out $(GRAPHENE_DATA)/nvt_$$T --overwrite || exit 1; \
	done

# SAGESnet vs LAMMPS benchmarks (docs/BENCHMARKS.md). BENCH_QUICK=--quick for the minutes-long version.
BENCH_OUT ?= benchmark_results
BENCH_QUICK ?=
BENCH_THREADS ?= 2
benchmark: setup
	$(BIN)/python -m benchmarks.run_benchmarks --suite all $(BENCH_QUICK) --threads $(BENCH_THREADS) --out $(BENCH_OUT)
