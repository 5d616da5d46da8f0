"""The submit operator inside real Airflow (dag.test()): XCom in and out, templating, task_state_store."""

import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from tests.conftest import load_dag


@pytest.mark.usefixtures("airflow_db")
def test_dataframe_from_xcom_to_manifest(make_emulator, monkeypatch, tmp_path):
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    dag = load_dag("submit_dataframe_dag")
    run = dag.test(run_conf={"manifest_dir": str(tmp_path)})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert server.stats()["batches"] == 3 and server.stats()["items"] == 120
    report = next(ti for ti in run.get_task_instances() if ti.task_id == "report")
    assert report.xcom_pull(task_ids="report") == 120
    assert list(tmp_path.iterdir())  # the manifest went where the template said


@pytest.mark.usefixtures("airflow_db")
def test_a_mapped_submit_renders_the_templates_of_its_request(make_emulator, monkeypatch, tmp_path):
    """Airflow renders a mapped task's fields without its render_template_fields: the request's
    templates must be rendered all the same, never sent (and paid for) as written."""
    server = make_emulator()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    run = load_dag("mapped_submit_dag").test(run_conf={"manifest_dir": str(tmp_path)})
    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    assert run.state == "success", {k: ti.state for k, ti in tis.items()}
    assert tis[("rubrics", -1)].xcom_pull(task_ids="rubrics") == ["Does the text praise mapped_submit?"] * 2
    assert server.stats()["batches"] == 3 + 2


@pytest.mark.usefixtures("airflow_db")
def test_sensor_and_wait_for_completion_defer_and_resume(make_emulator, monkeypatch, tmp_path):
    server = make_emulator(items_per_second=150, start_delay=0.3)
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    monkeypatch.setenv("TEST_MANIFEST_DIR", str(tmp_path))
    run = load_dag("submit_and_wait_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success", {k: ti.state for k, ti in tis.items()}
    assert tis["counts"].xcom_pull(task_ids="counts") == [90, 90, 3]
    assert server.stats()["batches"] == 6


@pytest.mark.usefixtures("airflow_db")
def test_the_load_emits_its_tables_standard_asset_uri_and_triggers_a_dag_scheduled_on_it(
        make_emulator, monkeypatch, tmp_path):
    import json

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    server = make_emulator()
    db = tmp_path / "l.db"
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", connection_json(server))
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    monkeypatch.setenv("TEST_LINEAGE_DB", str(db))
    monkeypatch.setenv("TEST_MANIFEST_DIR", str(tmp_path))
    run = load_dag("load_lineage_dag").test()
    assert run.state == "success"
    uri = f"sqlite://localhost{db}/main/summaries"
    with create_session() as session:
        events = [e for e in session.query(AssetEvent).all() if e.asset.uri == uri]
        assert events, [e.asset.uri for e in session.query(AssetEvent).all()]
        event = events[-1]
        assert event.extra["ok"] == 40 and event.extra["rows"] == 40
        assert [alias.name for alias in event.source_aliases] == ["scaledown-load:lineage_db/summaries"]
        assert event.asset.name == uri  # Airflow matches name and uri: both are the URI a consumer writes
        assert "load_lineage_consumer" in [ref.dag_id for ref in event.asset.scheduled_dags]
