# The two commands of the README. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: install mysql-client-headers test demo benchmarks stress reliability-page clean

# Two installs into one venv: the demo's (the provider and SQLite: nothing to compile, no root) and the
# tests' (every extra, whose MySQL provider compiles mysqlclient).
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -c constraints.txt -e '.[demo]'
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	@pkg-config --exists mariadb || pkg-config --exists mysqlclient || $(MAKE) mysql-client-headers
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP) $(DEMO_STAMP)

install: $(STAMP)

# mysqlclient, which apache-airflow-providers-mysql requires on Linux (the tests use its MySqlHook), compiles
# against the MariaDB/MySQL client headers: Debian's libmariadb-dev, installed once if missing. Only
# `make test` needs them; `make demo` does not.
mysql-client-headers:
	$(if $(filter 0,$(shell id -u)),,sudo -n) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -n) apt-get install -y -qq libmariadb-dev pkg-config

test: $(STAMP)
	$(PY) -m ruff check airflow_batch_provider tests dags
	$(PY) -m mypy
	$(PY) -m pytest -q tests

demo: $(DEMO_STAMP)
	$(PY) dags/run_demo.py $(ARGS)

benchmarks: $(STAMP)
	$(PY) -m pytest -q -s -m benchmark tests/benchmarks

# The example DAG 20 times on real Airflow components under a CPU hog; see tests/e2e/stress_example_dag.py.
stress: $(STAMP)
	$(PY) -m tests.e2e.stress_example_dag $(ARGS)

# Runs the reliability suite and renders docs/reliability.md from what it recorded.
reliability-page: $(STAMP)
	results=$$(mktemp) && SCALEDOWN_RELIABILITY_RESULTS=$$results $(PY) -m pytest -q tests/reliability \
		&& $(PY) -m tests.reliability.page $$results docs/reliability.md; status=$$?; rm -f $$results; exit $$status

clean:
	rm -rf $(VENV) .demo
