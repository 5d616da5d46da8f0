"""Where manifests go by default, and the refusal of a local folder where tasks run on other hosts."""

import pandas as pd
import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.job.manifest import LocalManifestDirError, default_manifest_dir, require_shared_manifest_dir
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator
from airflow_batch_provider.protocol import Summarize
from tests.conftest import load_dag
from tests.state_store import DictStateStore


def test_the_default_prefers_the_setting_then_shared_xcom_storage_then_the_dags_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__SCALEDOWN__MANIFEST_DIR", raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(tmp_path / "dags"))
    assert default_manifest_dir() == str(tmp_path / "scaledown_jobs")
    monkeypatch.setenv("AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH", "s3://aws_default@bucket/xcom/")
    assert default_manifest_dir() == "s3://aws_default@bucket/xcom/scaledown"
    monkeypatch.setenv("AIRFLOW__SCALEDOWN__MANIFEST_DIR", "gs://other/jobs")
    assert default_manifest_dir() == "gs://other/jobs"


@pytest.mark.parametrize("executor", ["CeleryExecutor", "KubernetesExecutor", "LocalExecutor,CeleryExecutor",
                                      "airflow.providers.celery.executors.celery_executor.CeleryExecutor"])
def test_a_local_folder_is_refused_under_a_distributed_executor_before_anything_is_paid(
        make_emulator, monkeypatch, tmp_path, executor):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    operator = DataFrameToBatchOperator(
        task_id="submit", dataframe=pd.DataFrame({"id": [1, 2], "text": ["a", "b"]}), id_column="id",
        text_column="text", request=Summarize(), manifest_dir=str(tmp_path / "jobs"))
    with pytest.raises(LocalManifestDirError, match="allow_local_manifest_dir"):
        operator.execute({"task_state_store": DictStateStore()})
    assert server.stats()["requests"].get("submit", 0) == 0 and not (tmp_path / "jobs").exists()
    monkeypatch.setenv("AIRFLOW__SCALEDOWN__ALLOW_LOCAL_MANIFEST_DIR", "True")  # every host mounts it
    assert operator.execute({"task_state_store": DictStateStore()})["rows"] == 2


def test_object_storage_and_local_executors_pass(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    require_shared_manifest_dir("s3://bucket/scaledown")
    require_shared_manifest_dir("gs://bucket/scaledown")
    with pytest.raises(LocalManifestDirError):
        require_shared_manifest_dir("file:///mnt/jobs")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    require_shared_manifest_dir("/tmp/jobs")


@pytest.mark.usefixtures("airflow_db")
def test_dag_test_runs_every_task_here_so_a_local_folder_is_fine(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    run = load_dag("submit_dataframe_dag").test(run_conf={"manifest_dir": str(tmp_path)})
    assert run.state == "success" and list(tmp_path.iterdir())
