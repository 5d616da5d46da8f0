# The two commands of the README. Everything else is set up by them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install mysql-client-headers test demo benchmarks stress reliability-page clean

$(STAMP): pyproject.toml constraints.txt
	@pkg-config --exists mariadb || pkg-config --exists mysqlclient || $(MAKE) mysql-client-headers
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# mysqlclient, which apache-airflow-providers-mysql requires (the tests use its MySqlHook), compiles
# against the MariaDB/MySQL client headers: Debian's libmariadb-dev, installed once if missing.
mysql-client-headers:
	$(if $(filter 0,$(shell id -u)),,sudo -n) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -n) apt-get install -y -qq libmariadb-dev pkg-config

test: $(STAMP)
	$(PY) -m ruff check airflow_batch_provider tests dags
	$(PY) -m mypy
	$(PY) -m pytest -q tests

demo: $(STAMP)
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
