# Two commands on a fresh machine: `make run` and `make test`. Both set up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job. Until the end-to-end recipe (`nano2 run`) exists it compiles and prints the 12B pretraining plan.
run: setup
	$(BIN)/nano2 mix plan mixtures/specs/nano2-12b-pretrain.yaml -o runs/plans/nano2-12b-pretrain/plan.json

test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-all: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/bench_mixtures.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
