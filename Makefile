PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SERVE   = $(VENV)/.installed-serve
TESTING = $(VENV)/.installed-test

.PHONY: serve test lint bench bench-quick wrk mosquitto clean

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

serve: $(SERVE)
	$(BIN)/roost serve --data-dir ./roost-data

test: $(TESTING)
	$(BIN)/ruff check roost tests
	$(BIN)/mypy
	$(BIN)/pytest -q
	# some API tests again over a second bus (tests/wire_bus.py): nothing above the bus knows which
	$(BIN)/pytest -q --bus=wire tests/test_api_resources.py tests/test_api_devices.py tests/test_streams.py

# wrk is the HTTP load generator of the benchmarks (Debian package)
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

# Mosquitto is the benchmark's MQTT peer (Debian package; the harness runs its own on a free port)
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		{ apt-get update -qq && apt-get install -y -qq mosquitto; }

# the full plan includes bench.flood (one device flooding, the healthcheck meanwhile)
bench: $(TESTING) wrk mosquitto
	$(BIN)/python -m bench.run --write BENCHMARKS.md

bench-quick: $(TESTING) wrk mosquitto
	$(BIN)/python -m bench.run --quick

lint: $(TESTING)
	$(BIN)/ruff check roost tests
	$(BIN)/ruff format --check roost tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
