"""The provider as a user installs it: the quickstart's wheel lines, run in a copy of the repository with
a fresh venv on the oldest Python the package supports, without the test extra; then one DAG, on
that install's own Airflow, against that install's own emulator.

This is also CI's check that the ``requires-python`` floor installs: the venv is made with exactly
that version's interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.unit.test_docs import BLOCK

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

DAG = '''
import pandas as pd
import pendulum
from airflow.sdk import DAG

from airflow_batch_provider.operators.load import BatchOutputToParquetOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from airflow_batch_provider.sensors.batch import BatchSensor

with DAG("from_the_wheel", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    submit = DataFrameToBatchOperator(
        task_id="submit", id_column="id", text_column="body", request=Summarize(max_tokens=40),
        dataframe=lambda **_: pd.DataFrame({"id": range(20), "body": [f"Order {i} came fast. It works." for i in range(20)]}))
    wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=1)
    load = BatchOutputToParquetOperator(task_id="load", job=submit.output, path="{{ var.value.out }}")
    submit >> wait >> load
'''

CHECK = '''
import sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
assert table.num_rows == 20 and set(table.column("status").to_pylist()) == {"ok"}, table
print("landed", table.num_rows)
'''


def floor_interpreter() -> str:
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=\s*(3\.\d+)", floor)
    assert version, f"requires-python {floor!r}: expected '>=3.N'"
    interpreter = shutil.which(f"python{version.group(1)}")
    assert interpreter, f"no python{version.group(1)} on this machine: the floor cannot be checked"
    return interpreter


def quickstart_block(holding: str) -> list[str]:
    """The command lines of the quickstart's one shell block that holds ``holding``."""
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    blocks = [m.group(2) for m in BLOCK.finditer(quickstart) if m.group(1) == "bash" and holding in m.group(2)]
    assert len(blocks) == 1, f"the quickstart has one block with {holding!r}"
    return [line for line in blocks[0].splitlines() if line.strip()]


def copy_of_the_repository(target: Path) -> Path:
    """What a clone holds: the tracked files, as they are in the working tree."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(command: list[str] | str, **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, shell=isinstance(command, str),
                            timeout=1200, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def test_the_wheel_installs_on_the_python_floor_and_runs_a_dag(tmp_path):
    clone = copy_of_the_repository(tmp_path / "airflow-batch-provider")
    venv = tmp_path / "venv"
    run([floor_interpreter(), "-m", "venv", str(venv)])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "SCALEDOWN", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    for line in quickstart_block("pip wheel"):  # as the quickstart says, with this venv's pip first on the PATH
        run(["bash", "-euo", "pipefail", "-c", line], cwd=clone, env=env)
    python = str(venv / "bin" / "python")
    installed = run([python, "-m", "pip", "list", "--format=freeze"], env=env)
    assert re.search(r"^airflow-batch-provider==", installed, re.M | re.I)
    assert not re.search(r"^(pytest|hypothesis|moto|ruff)==", installed, re.M | re.I), "the test extra came along"
    where = run([python, "-c", "import airflow_batch_provider as p; print(p.__file__)"], cwd=tmp_path, env=env)
    assert str(venv) in where and str(clone) not in where

    home = tmp_path / "airflow"
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "from_the_wheel.py").write_text(DAG)
    port_file = tmp_path / "emulator.port"
    emulator = subprocess.Popen([python, "-m", "airflow_batch_provider.emulator", "--port", "0", "--port-file",
                                 str(port_file), "--api-key", "wheel-key", "--start-delay", "0.5"],
                                env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "emulator.log").open("wb"))
    try:
        airflow_env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
                       "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(tmp_path / "jobs"),
                       "AIRFLOW__SCALEDOWN__SPOOL_DIR": str(tmp_path / "spool"),
                       "AIRFLOW_VAR_OUT": str(tmp_path / "out.parquet")}
        run([str(venv / "bin" / "airflow"), "db", "migrate"], env=airflow_env)
        assert "airflow-batch-provider" in run([str(venv / "bin" / "airflow"), "providers", "list"], env=airflow_env)
        for _ in range(600):
            if port_file.exists() and port_file.read_text():
                break
            assert emulator.poll() is None, (tmp_path / "emulator.log").read_text()[-2000:]
            subprocess.run(["sleep", "0.1"])
        airflow_env["AIRFLOW_CONN_BATCH_API_DEFAULT"] = (
            f'{{"conn_type": "batch_api", "host": "http://127.0.0.1:{port_file.read_text()}", "password": "wheel-key"}}')
        output = run([str(venv / "bin" / "airflow"), "dags", "test", "from_the_wheel"], env=airflow_env)
        assert "landed: 20 rows: 20 ok" in output, output[-3000:]
        assert "landed 20" in run([python, "-c", CHECK, str(tmp_path / "out.parquet")], env=env)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    # The quickstart's other way, from the clone itself, into the same venv (its dependencies are there).
    for line in quickstart_block('".[postgres]"'):
        run(["bash", "-euo", "pipefail", "-c", line], cwd=clone, env=env)
    where = run([python, "-c", "import airflow_batch_provider as p; print(p.__file__)"], cwd=tmp_path, env=env)
    assert str(venv) in where and str(clone) not in where  # installed from the clone, not linked to it

