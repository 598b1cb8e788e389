# Convenience targets; the README's two commands are the source of truth.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/bin/activate:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray]"

.PHONY: setup demo test bench
setup: $(VENV)/bin/activate
demo: setup
	$(VENV)/bin/weightzoo demo
test: setup
	$(PY) -m pytest -q
bench: setup
	$(PY) scripts/bench_population.py
	$(PY) scripts/bench_kernels.py
