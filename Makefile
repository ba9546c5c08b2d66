# The two README commands: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (the suite is sized for 2 cores; `TEST_WORKERS=auto` uses every core)
TEST_WORKERS ?= 2

.PHONY: setup demo test clean graphene-data graphene-tension-data graphene-energy-data graphene-corrective-data graphene-corrective-short-data graphene-strained-data graphene-kirigami-data

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
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) run .pytest_cache

# Training data for the default graphene model (reproducible: fixed seeds; not committed): periodic
# sheets of three sizes (so the model sees several voxel spacings), NVT at 4.2-1000 K, 6 ps each,
# recorded every 2 fs (the model's Δ), and tension runs (below). Datasets are named nvt_T (10x6
# sheet), nvt_SIZE_T, tension_T_RATE (10x6 sheet) and tension_kirigami_PATTERN_T_RATE.
GRAPHENE_DATA ?= data/graphene
MD_THREADS ?= 1
GRAPHENE_MD = $(BIN)/sagesnet-tf generate md --protocol nvt --dt-fs 1 --steps 6000 --record-every 2 \
	--threads $(MD_THREADS) --overwrite
# Tension (the benchmark protocol with 0.5 ps of relaxation) at 4.2 and 300 K and three strain rates:
# the 10x6 sheet to strain 0.3, and 7x6-cell kirigami ribbons (periodic along y with 20 Å of vacuum
# between them, as the model's grid is) to failure or strain 0.5. Their cut patterns are not the
# benchmark's held-out ones. Recorded sparsely: a burst of 9 records 2 fs apart (8 model steps) every
# 0.0025 of strain (TENSION_RATES pairs each rate in ps⁻¹ with that burst period in steps).
TRAIN_KIRIGAMI ?= 110000011000110 001100100000011 100001000010000
TENSION_TEMPS ?= 4.2 300
TENSION_RATES ?= 0.005:500 0.01:250 0.05:50
GRAPHENE_TENSION = $(BIN)/sagesnet-tf generate md --protocol tension --dt-fs 1 \
	--record-every 2 --burst-frames 9 --threads $(MD_THREADS) --overwrite
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
	$(MAKE) graphene-tension-data

graphene-tension-data: setup
	for P in $(TRAIN_KIRIGAMI); do \
	  $(BIN)/sagesnet-tf build kirigami --pattern $$P --nx 7 --ny 6 --periodic-y \
	    --out $(GRAPHENE_DATA)/kirigami_$$P.extxyz || exit 1; \
	done
	$(BIN)/sagesnet-tf build graphene --nx 10 --ny 6 --out $(GRAPHENE_DATA)/sheet_10x6.extxyz
	for T in $(TENSION_TEMPS); do for RB in $(TENSION_RATES); do \
	  R=$${RB%:*}; B=$${RB#*:}; \
	  $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/sheet_10x6.extxyz --temperature $$T --seed 5$${T%.*} \
	    --relax-ps 0.5 --strain-rate $$R --burst-every $$B --max-strain 0.3 --out $(GRAPHENE_DATA)/tension_$${T}_$$R || exit 1; \
	  for P in $(TRAIN_KIRIGAMI); do \
	    $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/kirigami_$$P.extxyz --temperature $$T --seed 6$${T%.*} \
	      --relax-ps 0.5 --strain-rate $$R --burst-every $$B --max-strain 0.5 --out $(GRAPHENE_DATA)/tension_kirigami_$${P}_$${T}_$$R || exit 1; \
	  done; \
	done; done

# More ribbons for the local energy's fit (configs/graphene_energy.yaml, issue 20): two more cut patterns
# (drawn with numpy default_rng(2026) among those without a fully cut column, none a benchmark pattern)
# and the pristine ribbon, 7x6 cells, 4.2 and 300 K, 0.05 ps⁻¹ to failure or strain 0.5, same bursts.
ENERGY_KIRIGAMI ?= 011000111011101 111000000011000 000000000000000
graphene-energy-data: setup
	for P in $(ENERGY_KIRIGAMI); do \
	  $(BIN)/sagesnet-tf build kirigami --pattern $$P --nx 7 --ny 6 --periodic-y \
	    --out $(GRAPHENE_DATA)/kirigami_$$P.extxyz || exit 1; \
	  for T in $(TENSION_TEMPS); do \
	    $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/kirigami_$$P.extxyz --temperature $$T --seed 6$${T%.*} \
	      --relax-ps 0.5 --strain-rate 0.05 --burst-every 50 --max-strain 0.5 \
	      --out $(GRAPHENE_DATA)/tension_kirigami_$${P}_$${T}_0.05 || exit 1; \
	  done; \
	done

# Corrective data for the local energy's refit (configs/graphene_corrective.yaml, issue 20): LAMMPS/AIREBO
# NVT at 4.2 K from the model's own quick kirigami tension frames at strains 0.025-0.25 (0.2 ps each, a
# record every 2 fs; sagesnet_tf/pipelines/corrective_md.py), on the six training patterns above and six more
# (numpy default_rng(2027) among the patterns without a fully cut column, none held out by a benchmark).
# The model runs are v2's (the model the data corrects).
CORRECTIVE_KIRIGAMI ?= $(TRAIN_KIRIGAMI) $(ENERGY_KIRIGAMI) 100111001001101 010001100111000 000000011110110 \
	010111110111001 000101000101010 001001001010110
graphene-corrective-data: setup
	$(BIN)/python -m sagesnet_tf.pipelines.corrective_md --model exported_models/sagesnet_graphene/2 \
	  --patterns $(CORRECTIVE_KIRIGAMI) --threads $(MD_THREADS) --out $(GRAPHENE_DATA)

# Corrective data that keeps the distortion (configs/graphene_energy_v3.yaml, issue 20, session 18): 10 fs of
# LAMMPS/AIREBO from each of v2's quick kirigami frames at strains 0.025-0.3 (every window of the fit within
# 10 fs of the model's frame), and the same from the frames rattled by 0.08 Å; on the patterns above and 12 more
# (numpy default_rng(2028) among the patterns without a fully cut column, none held out by a benchmark).
# About 15 minutes each on 2 cores.
CORRECTIVE_SHORT_KIRIGAMI ?= $(CORRECTIVE_KIRIGAMI) 101110110010000 101100010011010 001110100011001 000110011111101 \
	110010101000011 011000110100101 100100001000111 000110101001101 101010111101100 000101101100101 \
	111101000000001 111100010001001
CORRECTIVE_SHORT_STRAINS ?= 0.025 0.05 0.075 0.1 0.125 0.15 0.175 0.2 0.225 0.25 0.275 0.3
graphene-corrective-short-data: setup
	$(BIN)/python -m sagesnet_tf.pipelines.corrective_md --model exported_models/sagesnet_graphene/2 \
	  --patterns $(CORRECTIVE_SHORT_KIRIGAMI) --strains $(CORRECTIVE_SHORT_STRAINS) --steps 10 --prefix cshort \
	  --threads $(MD_THREADS) --out $(GRAPHENE_DATA)
	$(BIN)/python -m sagesnet_tf.pipelines.corrective_md --model exported_models/sagesnet_graphene/2 \
	  --patterns $(CORRECTIVE_SHORT_KIRIGAMI) --strains $(CORRECTIVE_SHORT_STRAINS) --steps 10 --rattle 0.08 \
	  --prefix crattle --threads $(MD_THREADS) --out $(GRAPHENE_DATA)

# Sheets held at high strain (configs/graphene_energy_v4.yaml, issue 20, session 19): the 10x6 sheet strained
# along x by 0.15-0.3 (affine), 1 ps of LAMMPS/AIREBO NVT at 4.2 and 300 K each, a record every 2 fs
# (sagesnet_tf/pipelines/strained_md.py). One LAMMPS thread: the datasets are then bit for bit the ones v4 was
# fitted on (the thread count changes AIREBO's rounding). About 5 minutes.
graphene-strained-data: setup
	test -f $(GRAPHENE_DATA)/sheet_10x6.extxyz || \
	  $(BIN)/sagesnet-tf build graphene --nx 10 --ny 6 --out $(GRAPHENE_DATA)/sheet_10x6.extxyz
	$(BIN)/python -m sagesnet_tf.pipelines.strained_md --structure $(GRAPHENE_DATA)/sheet_10x6.extxyz \
	  --threads 1 --out $(GRAPHENE_DATA)

# Benchmark-sized kirigami ribbons of the training patterns, for the experiment of
# configs/graphene_kirigami.yaml (not part of the shipped model, docs/TRAINING.md): 17x40 cells (about
# 2,400-2,600 atoms, 20-Å cuts), the benchmark protocol (4.2 K, 10 ps relaxation, 0.01 ps⁻¹ to
# failure), bursts of 9 records every 0.0025 of strain; 7-14 min of LAMMPS each on 2 threads, 357-443 MB each.
graphene-kirigami-data: setup
	for P in $(TRAIN_KIRIGAMI); do \
	  $(BIN)/sagesnet-tf build kirigami --pattern $$P --nx 17 --ny 40 --periodic-y \
	    --out $(GRAPHENE_DATA)/kirigami_17x40_$$P.extxyz || exit 1; \
	  $(GRAPHENE_TENSION) --structure $(GRAPHENE_DATA)/kirigami_17x40_$$P.extxyz --temperature 4.2 --seed 74 \
	    --relax-ps 10 --strain-rate 0.01 --burst-every 250 --max-strain 0.5 \
	    --out $(GRAPHENE_DATA)/tension_kirigami_17x40_$${P}_4.2_0.01 || exit 1; \
	done

# SAGESnet vs LAMMPS benchmarks (docs/BENCHMARKS.md). BENCH_QUICK=--quick for the minutes-long version.
BENCH_OUT ?= benchmark_results
BENCH_QUICK ?=
BENCH_THREADS ?= 2
benchmark: setup
	$(BIN)/python -m benchmarks.run_benchmarks --suite all $(BENCH_QUICK) --threads $(BENCH_THREADS) --out $(BENCH_OUT)
