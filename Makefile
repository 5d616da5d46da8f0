# The two commands of the README. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo benchmarks clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) dags/run_demo.py $(ARGS)

benchmarks: $(STAMP)
	$(PY) -m pytest -q -s -m benchmark tests/benchmarks

clean:
	rm -rf $(VENV) .demo
