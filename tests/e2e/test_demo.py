"""`make demo` (dags/run_demo.py) end to end, in a folder of the test's own: it lands the three
tables, and it never leaves its DAGs paused for a later run, even one an earlier demo left paused."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def make_demo(venv: Path, folder: Path) -> str:
    """The README's first command, in a venv of its own (installed on the first call)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHONPATH"))}
    result = subprocess.run(["make", "demo", f"VENV={venv}"], cwd=ROOT, text=True, capture_output=True,
                            env={**env, "SCALEDOWN_DEMO_DIR": str(folder)}, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def paused(folder: Path) -> dict[str, int]:
    with sqlite3.connect(folder / "airflow" / "airflow.db") as conn:
        return dict(conn.execute("SELECT dag_id, is_paused FROM dag").fetchall())


def test_make_demo_installs_only_the_demo_extra_lands_and_leaves_no_dag_paused(tmp_path):
    """No MySQL provider (so nothing compiled, no apt), no test tools; the job lands; and a later demo
    runs although an earlier one left its DAGs paused."""
    venv, folder = tmp_path / "venv", tmp_path / "demo"
    output = make_demo(venv, folder)
    assert "review_sentiment    300 rows" in output and "done in" in output and "apt-get" not in output
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                               text=True, capture_output=True, check=True).stdout.lower()
    assert "apache-airflow-providers-sqlite==" in installed
    for absent in ("mysqlclient", "apache-airflow-providers-mysql", "pytest", "moto", "psycopg2"):
        assert f"\n{absent}==" not in f"\n{installed}", f"make demo installed {absent}"
    assert paused(folder).get("enrich_reviews") == 0
    with sqlite3.connect(folder / "airflow" / "airflow.db") as conn:  # as an earlier demo left it
        conn.execute("UPDATE dag SET is_paused = 1")
    make_demo(venv, folder)
    assert set(paused(folder).values()) == {0}
