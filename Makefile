# The two commands of the README. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo benchmarks reliability-page clean

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

# Runs the reliability suite and renders docs/reliability.md from what it recorded.
reliability-page: $(STAMP)
	results=$$(mktemp) && SCALEDOWN_RELIABILITY_RESULTS=$$results $(PY) -m pytest -q tests/reliability \
		&& $(PY) -m tests.reliability.page $$results docs/reliability.md; status=$$?; rm -f $$results; exit $$status

clean:
	rm -rf $(VENV) .demo
