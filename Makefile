# Two commands do everything on a fresh machine:
#   make run   creates .venv, installs, and starts the gateway with SQLite and demo data
#   make test  creates .venv, installs with test dependencies, runs ruff and the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= data

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/spgw demo --host $(HOST) --port $(PORT) --data-dir $(DATA)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/audit_verify.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/http_throughput.py
	$(BIN)/python bench/operations.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
