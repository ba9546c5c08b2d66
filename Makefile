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
	$(BIN)/sagesnet-tf simulate --structure examples/graphene_10x6_300K.extxyz --temperature 300 \
		--thermostat-ps 0.1 --steps 1000 --every 50 --out run/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) run .pytest_cache

# Training data for the default graphene model (reproducible: fixed seeds; not committed): periodic
# sheets of three sizes (so the model sees several voxel spacings), NVT at 4.2-1000 K, 6 ps each,
# recorded every 2 fs (the model's Δ), and tension runs (below). Datasets are named nvt_T (10x6
# sheet), nvt_SIZE_T, tension_T (10x6 sheet) and tension_kirigami_PATTERN.
GRAPHENE_DATA ?= data/graphene
MD_THREADS ?= 1
GRAPHENE_MD = $(BIN)/sagesnet-tf generate md --protocol nvt --dt-fs 1 --steps 6000 --record-every 2 \
	--threads $(MD_THREADS) --overwrite
# Tension (the benchmark protocol at 0.05 ps⁻¹ after 0.5 ps of relaxation): the 10x6 sheet at 4.2 and
# 300 K to strain 0.3, and 7x6-cell kirigami ribbons (periodic along y with 20 Å of vacuum between
# them, as the model's grid is) at 4.2 K to failure. Their cut patterns are not the benchmark's held-out ones.
TRAIN_KIRIGAMI ?= 110000011000110 001100100000011
GRAPHENE_TENSION = $(BIN)/sagesnet-tf generate md --protocol tension --dt-fs 1 --strain-rate 0.05 --relax-ps 0.5 \
	--record-every 2 --threads $(MD_THREADS) --overwrite
graphene-data: setup
	for SIZE in 10x6 6x4 13x8; do \
	  $(BIN)/sagesnet-tf build graphene --nx $${SIZE%x*} --ny $${SIZE#*x} --out $(GRAPHENE_DATA)/sheet_$$SIZE.extxyz || exit 1; \
	done
	for T in 4.2 100 300 600 1000; do \
	  $(GRAPHENE_MD) --structure $(GRAPHENE_DATA)/sheet_10x6.extxyz --temperature $$T --seed 1$${T%.*} \
	    --out $(GRAPHENE_DATA)/nvt_$$T || exit 1; \
	done
	for T in 4.2 300 1000; do \
	  $(GRAPHENE_MD) --structure $(GRAPHENE_DATA)/sheet_6x4.extxyz --temperature $$T --seed 3$${T%.*} \
	    --out $(GRAPHENE_DATA)/nvt_6x4_$$T || exit 1; \
	done
	for T in 100 600; do \
	  $(GRAPHENE_MD) --structure $(GRAPHENE_DATA)/sheet_13x8.extxyz --temperature $$T --seed 4$${T%.*} \
	    --out $(GRAPHENE_DATA)/nvt_13x8_$$T || exit 1; \
	done
	for T in 4.2 300; do \
	  $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/sheet_10x6.extxyz --temperature $$T --seed 5$${T%.*} \
	    --max-strain 0.3 --out $(GRAPHENE_DATA)/tension_$$T || exit 1; \
	done
	for P in $(TRAIN_KIRIGAMI); do \
	  $(BIN)/sagesnet-tf build kirigami --pattern $$P --nx 7 --ny 6 --periodic-y \
	    --out $(GRAPHENE_DATA)/kirigami_$$P.extxyz || exit 1; \
	  $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/kirigami_$$P.extxyz --temperature 4.2 --seed 6 \
	    --max-strain 0.6 --out $(GRAPHENE_DATA)/tension_kirigami_$$P || exit 1; \
	done

# SAGESnet vs LAMMPS benchmarks (docs/BENCHMARKS.md). BENCH_QUICK=--quick for the minutes-long version.
BENCH_OUT ?= benchmark_results
BENCH_QUICK ?=
BENCH_THREADS ?= 2
benchmark: setup
	$(BIN)/python -m benchmarks.run_benchmarks --suite all $(BENCH_QUICK) --threads $(BENCH_THREADS) --out $(BENCH_OUT)
