# Two commands on a fresh machine: `make run` and `make test`. Both set up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser sandbox run test test-all lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Headless Chromium for the report's browser test (Debian's package; needs root, as on CI). Without it the
# browser test skips on a developer machine and fails on CI.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "note: chromium not installed (needs root); the report's browser test will skip"; }

# bubblewrap, the kernel sandbox every piece of generated code runs in (verify/sandbox.py refuses to run code without
# it). Debian's package; installed when root (CI), else a note: a developer installs it once with apt.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
	    || echo "note: bubblewrap not installed (needs root: apt-get install bubblewrap); generated code will not run"; }

# The main job: the whole recipe at tiny scale (recipes/tiny.yaml), cached stage by stage, then its report.
run: setup sandbox
	$(BIN)/nano2 run recipes/tiny.yaml

test: setup browser sandbox
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
