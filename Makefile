# The README's commands. `make up` starts everything; `make test` installs the test
# dependencies and runs the whole suite (this is what .ci/run calls).
PYTHON ?= python3

.PHONY: install up test check bench

install:
	$(PYTHON) -m pip install -q -e '.[test]'

up: install
	orasi up

test: install
	$(PYTHON) -m pytest -q -p no:cacheprovider

check:
	$(PYTHON) -m pip install -q -e '.[dev]'
	ruff check .
	ruff format --check .
	mypy

bench: install
	$(PYTHON) -m benchmarks.agent_throughput
