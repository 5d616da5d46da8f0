"""The provider as Airflow's own CLI sees it: registered, its connection type usable and testable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-cli-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=180)
    return env


def airflow(env, *args):
    result = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def test_providers_list_and_hooks_show_the_provider(airflow_env):
    code, out = airflow(airflow_env, "providers", "list")
    assert code == 0 and "airflow-batch-provider" in out
    code, out = airflow(airflow_env, "providers", "hooks")
    assert "batch_api" in out and "airflow_batch_provider.hooks.batch_api.BatchApiHook" in out


def test_connections_add_and_test_against_the_emulator(airflow_env, make_emulator):
    server = make_emulator()
    code, out = airflow(airflow_env, "connections", "add", "scaledown_local", "--conn-type", "batch_api",
                        "--conn-host", server.url, "--conn-password", server.api_key)
    assert code == 0, out
    code, out = airflow(airflow_env, "connections", "test", "scaledown_local")
    assert code == 0 and "Connection success!" in out and server.api_key not in out, out
    airflow(airflow_env, "connections", "add", "scaledown_wrong", "--conn-type", "batch_api",
            "--conn-host", server.url, "--conn-password", "not-the-key")
    code, out = airflow(airflow_env, "connections", "test", "scaledown_wrong")
    assert "Wrong API key" in out
