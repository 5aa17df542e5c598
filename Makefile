PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SERVE   = $(VENV)/.installed-serve
TESTING = $(VENV)/.installed-test

CONSOLE_VENDOR = roost/console/static/vendor/uPlot.iife.min.js

.PHONY: serve test lint bench bench-quick wrk mosquitto chromium nats postgres console clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# serving needs Roost and its dependencies only; the test tools come with `make test`
$(SERVE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(SERVE)

$(TESTING): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(SERVE) $(TESTING)

# the console's chart library, from npm at the version console/package-lock.json pins (Node.js
# needed); copied into roost/console/static/vendor/, which git ignores
console: $(CONSOLE_VENDOR)

$(CONSOLE_VENDOR): console/package.json console/package-lock.json console/build_vendor.py
	$(PYTHON) console/build_vendor.py --force

serve: $(SERVE) console
	$(BIN)/roost serve --data-dir ./roost-data

# the suite's files spread over this many pytest processes (most tests wait on sockets and
# child processes, not on a core); each file stays whole in one process, in its order, and a
# process that dies (a test over its time limit) fails the run instead of being replaced
TEST_PROCESSES ?= 3
PYTEST_SPREAD = -n $(TEST_PROCESSES) --dist loadfile --max-worker-restart=0

test: $(TESTING) console
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q $(PYTEST_SPREAD) --ignore=tests/test_api_fuzz.py
	# the fuzz alone: schemathesis gives its tests one node id, which pytest-xdist cannot spread
	$(BIN)/pytest -q tests/test_api_fuzz.py
	# some API tests again over a second bus (tests/wire_bus.py): nothing above the bus knows which
	$(BIN)/pytest -q $(PYTEST_SPREAD) --bus=wire tests/test_api_resources.py tests/test_api_devices.py tests/test_streams.py
	# and over the NATS bus, on a nats-server of their own (`make nats`)
	$(BIN)/pytest -q $(PYTEST_SPREAD) --bus=nats tests/test_api_resources.py tests/test_streams.py tests/test_events.py
	# some API tests again on the PostgreSQL store (they skip without ROOST_TEST_DATABASE_URL or CI)
	$(BIN)/pytest -q $(PYTEST_SPREAD) --store=postgres tests/test_api_devices.py tests/test_api_buckets.py tests/test_api_tokens.py

# wrk is the HTTP load generator of the benchmarks (Debian package)
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

# Chromium is the browser of the console's tests (Debian package; driven by Playwright for Python
# through its executable_path: `playwright install` is never needed)
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Mosquitto is the benchmark's MQTT peer (Debian package; the harness runs its own on a free port)
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		{ apt-get update -qq && apt-get install -y -qq mosquitto; }

# nats-server is the bus of several Roost nodes (ROOST_NATS_URL); the multi-node tests run their own
# on a free loopback port (Debian package)
nats:
	@command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || \
		{ apt-get update -qq && apt-get install -y -qq nats-server; }

# PostgreSQL for the tests of the PostgreSQL store (Debian package): the cluster started, and a
# role and a database for the tests at POSTGRES_TEST_URL, which tests/conftest.py uses in CI
# (elsewhere: export ROOST_TEST_DATABASE_URL=$(POSTGRES_TEST_URL))
POSTGRES_TEST_URL = postgresql://roost:roost@127.0.0.1:5432/roost_test
PSQL = su postgres -s /bin/sh -c

postgres:
	@cd /tmp; command -v pg_ctlcluster >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq postgresql; }
	@cd /tmp; pg_lsclusters -h | grep -q online || \
		pg_ctlcluster $$(pg_lsclusters -h | awk 'NR == 1 {print $$1, $$2}') start
	@cd /tmp; $(PSQL) "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'roost'\"" | grep -q 1 || \
		$(PSQL) "psql -qc \"CREATE ROLE roost LOGIN PASSWORD 'roost'\""
	@cd /tmp; $(PSQL) "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'roost_test'\"" | grep -q 1 || \
		$(PSQL) "createdb -O roost roost_test"
	@echo "PostgreSQL for the tests: $(POSTGRES_TEST_URL)"

# the full plan includes bench.flood (one device flooding, the healthcheck meanwhile); with
# ROOST_BENCH_DATABASE_URL set (e.g. to $(POSTGRES_TEST_URL), `make postgres`), ingest into
# PostgreSQL too (bench.ingest_pg, ingest_pg_per_s), else the summary says it skipped it
bench: $(TESTING) wrk mosquitto nats
	$(BIN)/python -m bench.run --write BENCHMARKS.md

bench-quick: $(TESTING) wrk mosquitto nats
	$(BIN)/python -m bench.run --quick

lint: $(TESTING)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info console/node_modules roost/console/static/vendor test-artifacts
