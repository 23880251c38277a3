# Two entry points: `make demo` and `make test`. Both build the virtualenv first
# (Python deps from PyPI; Kafka's jars come from Maven Central on first broker start).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fraudapp demo

test: $(STAMP)
	$(VENV)/bin/ruff check fraudapp tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check fraudapp tests
	$(VENV)/bin/ruff format --check fraudapp tests

clean:
	rm -rf $(VENV) fraudapp-data .pytest_cache
