# The README's commands. `make up` starts everything; `make test` installs the test
# dependencies, starts the real servers the tests use, runs the whole suite and stops them
# (this is what .ci/run calls).
PYTHON ?= python3
export ORASI_TEST_S3_ENDPOINT ?= http://127.0.0.1:8333
export ORASI_TEST_CATALOG_URI ?= postgresql+psycopg://postgres@127.0.0.1:5432/orasi_test
export ORASI_TEST_ETCD ?= http://127.0.0.1:2379
export AWS_ACCESS_KEY_ID ?= testkey
export AWS_SECRET_ACCESS_KEY ?= testsecret
export AWS_REGION ?= us-east-1

.PHONY: install up test check bench servers stop-servers images

install:
	$(PYTHON) -m pip install -q -e '.[test]'

up:
	$(PYTHON) -m pip install -q -e .
	orasi up

servers:
	scripts/test-servers.sh start

stop-servers:
	scripts/test-servers.sh stop

# The servers are stopped whatever fails after they started (fuzz-asan.sh: the native scanner
# under AddressSanitizer; gcc builds the extension too). The suite runs on two workers, a test
# file to a worker (most of its time is spent waiting for the processes and servers it drives;
# service_process.free_port gives each worker its own ports); the fault tests, which time
# processes killed under load, run after it on one.
PYTEST = $(PYTHON) -m pytest -q -p no:cacheprovider
test: install
	scripts/test-packages.sh
	scripts/deploy-tools.sh >/dev/null
	scripts/test-servers.sh start; status=0; \
	  { scripts/fuzz-asan.sh 10 \
	    && $(PYTEST) -p no:benchmark -n 2 --dist loadfile --ignore=tests/fault \
	    && $(PYTEST) tests/fault; } || status=$$?; \
	  scripts/test-servers.sh stop; exit $$status

check:
	$(PYTHON) -m pip install -q -e '.[dev]'
	ruff check .
	ruff format --check .
	mypy

bench: install
	$(PYTHON) -m benchmarks.agent_throughput

# The orasi image (docker/Dockerfile) built with buildah on a locally made Debian base (not run by test).
images:
	scripts/images.sh
