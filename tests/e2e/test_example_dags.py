"""The example DAGs through real Airflow (`airflow dags test`, a separate process with its own
metadata database), against the emulator as its own process, checking the landed rows."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import POSTGRES_DSN

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture
def airflow_env(tmp_path, emulator_process):
    emulator = emulator_process("--items-per-second", "2000")
    home = tmp_path / "airflow"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(tmp_path / "jobs"),
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}),
        "AIRFLOW_CONN_REVIEWS_DB": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "reviews.db")}),
        "AIRFLOW_CONN_WAREHOUSE": POSTGRES_DSN.replace("postgresql://", "postgres://"),
    })
    home.mkdir()
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    env["_EMULATOR_ITEMS"] = "0"
    return env, emulator, tmp_path


def dags_test(env, dag_id, *extra):
    result = subprocess.run([AIRFLOW, "dags", "test", dag_id, *extra], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def test_enrich_reviews_lands_three_tables(airflow_env):
    env, emulator, tmp_path = airflow_env
    dags_test(env, "enrich_reviews")
    with sqlite3.connect(tmp_path / "reviews.db") as conn:
        def q(sql):
            return conn.execute(sql).fetchall()
        assert q("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_sentiment WHERE status = 'ok'") == [(300, 300)]
        assert q("SELECT COUNT(*) FROM review_entities WHERE status = 'ok' AND entity_price LIKE '$%'")[0][0] > 250
        long_reviews = q("SELECT COUNT(*) FROM review_summaries")[0][0]
        assert 50 < long_reviews < 150 and q("SELECT COUNT(*) FROM review_summaries WHERE summary LIKE '• %'")[0][0] == long_reviews
        labels = dict(q("SELECT top_label, COUNT(*) FROM review_sentiment GROUP BY 1"))
        assert labels["positive"] > 50 and labels["negative"] > 50
    assert emulator.stats()["items"] == 300 + 300 + long_reviews


def test_two_runs_of_enrich_reviews_at_once_both_succeed(airflow_env):
    """A second deployment (its own metadata database) runs the same DAG into the same tables at
    the same time: the loads queue for the SQLite file instead of failing with 'database is locked'."""
    env, emulator, tmp_path = airflow_env
    other = {**env, "AIRFLOW_HOME": str(tmp_path / "airflow-2"),
             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow-2/airflow.db"}
    (tmp_path / "airflow-2").mkdir()
    subprocess.run([AIRFLOW, "db", "migrate"], env=other, check=True, capture_output=True, timeout=300)
    runs = [subprocess.Popen([AIRFLOW, "dags", "test", "enrich_reviews"], env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for environment in (env, other)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(output[-3000:] for output in outputs)
    with sqlite3.connect(tmp_path / "reviews.db") as conn:
        for table in ("review_sentiment", "review_entities"):
            assert conn.execute(f"SELECT COUNT(*), COUNT(DISTINCT review_id) FROM {table}").fetchall() == [(300, 300)]


def test_warehouse_enrichment_is_incremental(airflow_env):
    env, emulator, _ = airflow_env
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS support_tickets; DROP TABLE IF EXISTS ticket_topics;"
                    "CREATE TABLE support_tickets (ticket_id BIGINT, body TEXT, created_at TIMESTAMPTZ DEFAULT '2026-11-10')")
        cur.execute("INSERT INTO support_tickets (ticket_id, body) SELECT g, CASE g % 4 "
                    "WHEN 0 THEN 'I was charged twice on my invoice ' || g || ', please refund.' "
                    "WHEN 1 THEN 'My parcel ' || g || ' is late, delivery was promised last week.' "
                    "WHEN 2 THEN 'The kettle arrived broken and damaged, order ' || g || '.' "
                    "ELSE 'I cannot log in, password reset for account ' || g || ' fails.' END "
                    "FROM generate_series(1, 200) g")
    dags_test(env, "warehouse_enrichment", "2026-11-20")
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT top_label, COUNT(*) FROM ticket_topics WHERE status = 'ok' GROUP BY 1 ORDER BY 1")
        assert dict(cur.fetchall()) == {"account": 50, "billing": 50, "defect": 50, "delivery": 50}
        cur.execute("UPDATE support_tickets SET body = 'The parcel never arrived, delivery lost.' WHERE ticket_id = 4")
        cur.execute("INSERT INTO support_tickets VALUES (201, 'Refund my payment please.', '2026-11-20 12:00+00')")
    before = emulator.stats()["items"]
    output = dags_test(env, "warehouse_enrichment", "2026-11-21")
    assert emulator.stats()["items"] - before == 2  # only the changed and the new ticket were paid for
    assert "2 rows in 1 batches" in output and "199 already landed" in output
    before = emulator.stats()["items"]
    dags_test(env, "warehouse_enrichment", "2026-11-22")  # nothing new: an empty job, nothing paid
    assert emulator.stats()["items"] == before
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT ticket_id) FROM ticket_topics")
        assert cur.fetchone() == (201, 201)
        cur.execute("SELECT top_label FROM ticket_topics WHERE ticket_id = 4")
        assert cur.fetchone() == ("delivery",)


def test_partitioned_enrichment_maps_over_partitions(airflow_env):
    env, emulator, tmp_path = airflow_env
    dags_test(env, "partitioned_enrichment")
    with sqlite3.connect(tmp_path / "reviews.db") as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT review_id), COUNT(DISTINCT batch_id) "
                            "FROM partitioned_sentiment").fetchall() == [(300, 300, 6)]
