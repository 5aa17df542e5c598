PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: serve test lint bench bench-quick wrk clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/roost serve --data-dir ./roost-data

test: $(STAMP)
	$(BIN)/ruff check roost tests
	$(BIN)/mypy
	$(BIN)/pytest -q

# wrk is the HTTP load generator of the benchmarks (Debian package)
wrk:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

bench: $(STAMP) wrk
	$(BIN)/python -m bench.run --write BENCHMARKS.md

bench-quick: $(STAMP) wrk
	$(BIN)/python -m bench.run --quick

lint: $(STAMP)
	$(BIN)/ruff check roost tests
	$(BIN)/ruff format --check roost tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
