# The two README commands: `make demo` (set up, then run the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test clean

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
