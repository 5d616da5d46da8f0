"""The example pipeline on a distributed deployment: CeleryExecutor with the Redis broker, PostgreSQL
as the metadata database, api-server, scheduler, dag-processor, triggerer and two Celery workers,
each its own process with its own working directory, TMPDIR and hostname, and manifests on
S3-compatible storage (moto in server mode on a loopback port, through an ``aws`` connection).

``dags/partitioned_enrichment.py`` maps submit -> deferred sensor -> load over three partitions.
The test asserts from the task instances' hostnames that both workers ran tasks, that the manifests
live in the bucket and on no worker's disk, and that every row landed once. It prints the figures
docs/scaling.md quotes (wall time, rows, tasks per worker, peak memory of each worker).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import psycopg2
import pytest
import redis

from tests.conftest import POSTGRES_DSN, aws_connection
from tests.e2e.airflow_processes import AirflowProcesses

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BUCKET = "scaledown-e2e"
WORKERS = ("worker-a", "worker-b")
REDIS_DB = 11  # a database of the machine's Redis; the test's keys carry its own queue's name


@pytest.fixture
def metadata_database():
    """A PostgreSQL database of its own for Airflow's metadata, dropped afterwards."""
    name = f"airflow_celery_{secrets.token_hex(4)}"
    admin = psycopg2.connect(POSTGRES_DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield POSTGRES_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + f"/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


class PeakMemory(threading.Thread):
    """Samples the resident memory of each worker's whole process tree (the Celery worker, its pool
    and the task processes it starts) and of its largest single process, keeping the peaks."""

    def __init__(self, processes: dict[str, subprocess.Popen]) -> None:
        super().__init__(daemon=True)
        self.roots = {name: psutil.Process(p.pid) for name, p in processes.items()}
        self.peak = dict.fromkeys(processes, 0)
        self.largest = dict.fromkeys(processes, 0)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            for name, root in self.roots.items():
                try:
                    sizes = [process.memory_info().rss for process in [root, *root.children(recursive=True)]]
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak[name], sum(sizes))
                self.largest[name] = max(self.largest[name], *sizes)


def test_partitioned_pipeline_on_two_celery_workers_with_manifests_on_s3(
        tmp_path, emulator_process, moto_s3, metadata_database):
    endpoint, s3 = moto_s3
    s3.create_bucket(Bucket=BUCKET)
    emulator = emulator_process("--items-per-second", "2000", "--latency", "0.02")
    broker = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    queue = f"scaledown-e2e-{secrets.token_hex(3)}"
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS partitioned_sentiment")
    home = tmp_path / "airflow"
    home.mkdir()
    airflow = AirflowProcesses(home, ROOT / "dags", {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_database.replace("+psycopg2", ""),
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",  # a free slot takes the next task
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint),
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": f"s3://aws_default@{BUCKET}/scaledown",
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps(
            {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key}),
        # The example lands in "reviews_db": here a PostgreSQL warehouse every worker reaches.
        "AIRFLOW_CONN_REVIEWS_DB": POSTGRES_DSN.replace("postgresql://", "postgres://"),
    }, metadata_database=metadata_database)
    try:
        airflow.start_all()
        workers = {name: airflow.start_celery_worker(name, tmp_path, queue) for name in WORKERS}
        airflow.wait_for_log(WORKERS, "ready.")  # both consume before the first task is queued
        memory = PeakMemory(workers)
        memory.start()
        started = time.monotonic()
        run_id = airflow.trigger_dag("partitioned_enrichment")
        deadline = time.monotonic() + 600
        while (state := airflow.run_state("partitioned_enrichment", run_id)) not in ("success", "failed"):
            assert time.monotonic() < deadline, airflow.tail_logs()
            time.sleep(2)
        wall = time.monotonic() - started
        memory.done.set()
        instances = airflow.api("GET", f"/dags/partitioned_enrichment/dagRuns/{run_id}/taskInstances")["task_instances"]
        assert state == "success", (instances, airflow.tail_logs(60))
    finally:
        airflow.stop_all()
        for key in broker.scan_iter(f"*{queue}*"):  # only what this test's queue left behind
            broker.delete(key)

    per_worker = Counter(ti["hostname"] for ti in instances)
    assert set(per_worker) == set(WORKERS), per_worker  # every task ran on a worker, and both took some
    assert all(ti["state"] == "success" for ti in instances)
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT review_id), COUNT(DISTINCT batch_id), "
                    "COUNT(*) FILTER (WHERE status = 'ok') FROM partitioned_sentiment")
        rows, distinct, batches, ok = cur.fetchone()
    assert rows == distinct == ok == 300 and batches == 6
    assert emulator.stats()["items"] == 300  # each row paid for once
    manifests = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="scaledown/").get("Contents", [])]
    assert len({key.split("/")[1] for key in manifests}) == 3, manifests  # one job per partition, in the bucket
    for name in WORKERS:  # and nothing of a job on a worker's own disk (the load's spool is gone once it landed)
        local = [p for p in (tmp_path / name).rglob("*") if "scaledown" in p.name and p.is_dir()]
        assert all(p.name.startswith("scaledown-spool-") and not any(p.iterdir()) for p in local), local
    print(f"\nCelery e2e: {rows} rows, 3 partitions, {len(instances)} task instances in {wall:.1f} s "
          f"(trigger to run success); tasks per worker: {dict(sorted(per_worker.items()))}; peak memory "
          f"(worker + pool + task processes, largest one process): "
          + ", ".join(f"{n} {memory.peak[n] / 2**20:.0f} MiB, {memory.largest[n] / 2**20:.0f} MiB"
                      for n in WORKERS))
