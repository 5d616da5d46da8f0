"""The headline benchmark: a nightly 1 M-row job at the API's speed, with the settings users have.

1,000,000 rows from Parquet, API v2 (20,000 batches of 50), the emulator answering every request
50 ms late, PostgreSQL upsert, every operator setting at its default. Run twice: with the defaults
of a fresh Airflow (``default_deferrable`` False: the sensor pokes from the worker) and deferred
(the trigger runs in line under dag.test()). Each run is its own process, so its peak RSS is its
own. Printed per phase against its floor (batches x latency / concurrency; the load asks once a
batch): the submit, the wait after the emulator's last batch finished, the load; the total; the
peak RSS, and the peak while each task ran. Run with `make benchmarks` (about 20 minutes on 2 cores); figures in docs/performance.md.

``test_a_million_rows_under_sustained_faults`` runs it again with 30 % of requests failing on every
route in every way (issue 24), against the same run without faults in the same test: both with the
defaults plus ``retry_ambiguous_submits``; it also reports the load's spool at its fullest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import POSTGRES_DSN
from tests.emulator_helpers import EmulatorProcess

pytestmark = pytest.mark.benchmark
ROOT = Path(__file__).resolve().parents[2]
ROWS, PER_BATCH, LATENCY, CONCURRENCY = int(os.environ.get("BENCH_HEADLINE_ROWS", 1_000_000)), 50, 0.05, 8


class LastBatchWatch(threading.Thread):
    """Polls the emulator's counts, noting when every batch had finished."""

    def __init__(self, emulator: EmulatorProcess, batches: int) -> None:
        super().__init__(daemon=True)
        self.emulator, self.batches, self.finished_at = emulator, batches, None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            stats = self.emulator.stats()
            if stats.get("batches_completed", 0) + stats.get("batches_failed", 0) >= self.batches:
                self.finished_at = time.time()
                return


FAULTS = {"rate": 0.3, "kinds": ["429", "500", "502", "503", "504", "reset", "reset_after"],
          "routes": ["submit", "status", "output"], "retry_after": 1, "seed": 21}


class SpoolWatch(threading.Thread):
    """The most the load's spool of downloaded outputs held on disk."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder, self.peak = folder, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                size = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
            except OSError:  # a file renamed or removed while summed
                continue
            self.peak = max(self.peak, size)


def run_headline(tmp_path: Path, *, deferrable: bool, faults: dict | None = None, **extra) -> dict:
    """One run of the pipeline in its own process; its times, peak RSS and spool size."""
    texts = [f"Review {i}: the kettle boils fast and the handle stays cool. Shipping took two days." for i in range(ROWS)]
    pq.write_table(pa.table({"id": pa.array(range(ROWS), pa.int64()), "text": texts}), tmp_path / "rows.parquet")
    del texts
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_headline")
    batches = ROWS // PER_BATCH
    emulator = EmulatorProcess(["--api-version", "2", "--latency", str(LATENCY)], tmp_path).start()
    if faults:
        emulator.control("/_emulator/faults", **faults)
    watch = LastBatchWatch(emulator, batches)
    spool = SpoolWatch(tmp_path / "spool")
    home = tmp_path / "airflow"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "dags"),
           "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(deferrable),
           "AIRFLOW__SCALEDOWN__SPOOL_DIR": str(tmp_path / "spool"),
           "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps(
               {"conn_type": "batch_api", "host": emulator.url, "password": emulator.api_key, "extra": extra}),
           "AIRFLOW_CONN_BENCH_PG": POSTGRES_DSN.replace("postgresql://", "postgres://"),
           "PYTHONPATH": str(ROOT)}
    try:
        watch.start()
        spool.start()
        started = time.time()
        child = subprocess.run([sys.executable, "-m", "tests.benchmarks.headline_child", str(tmp_path / "rows.parquet"),
                                str(tmp_path / "jobs")], env=env, cwd=ROOT, capture_output=True, text=True,
                               timeout=3 * 3600)
        total = time.time() - started
        (tmp_path / "child.log").write_text(child.stdout + child.stderr)  # the task logs, to read after
        stats = emulator.stats()
    finally:
        watch.stop.set()
        spool.stop.set()
        emulator.stop()
    lines = [line for line in child.stdout.splitlines() if line.startswith("HEADLINE ")]
    assert lines, child.stdout[-3000:] + child.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("HEADLINE "))
    assert result["state"] == "success", child.stdout[-3000:]
    with psycopg2.connect(POSTGRES_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM bench_headline")
        assert cur.fetchone() == (ROWS, ROWS)
    assert stats["batches"] == batches  # billed once, faults or not
    tasks = result["tasks"]
    result["seconds"] = {task: end - start for task, (start, end) in tasks.items()}
    result["wait_after"] = tasks["wait"][1] - watch.finished_at if watch.finished_at else float("nan")
    result["total"] = total
    result["spool_peak_mb"] = spool.peak / 2**20
    result["faults"] = sum(stats.get("faults_injected", {}).values())
    return result


def report(result: dict, what: str) -> None:
    batches = ROWS // PER_BATCH
    seconds, total = result["seconds"], result["total"]
    floor = batches * LATENCY / CONCURRENCY
    print(f"\n{ROWS:,} rows, {batches:,} batches, {LATENCY * 1000:.0f} ms a request, {what}:"
          f"\n  submit {seconds['submit']:.1f} s (floor {floor:.1f} s, ratio {seconds['submit'] / floor:.2f})"
          f"\n  wait   {seconds['wait']:.1f} s in all, {result['wait_after']:.1f} s after the emulator's last batch "
          "finished"
          f"\n  load   {seconds['load']:.1f} s (floor {floor:.1f} s, ratio {seconds['load'] / floor:.2f})"
          f"\n  total  {total:.0f} s ({total / 60:.1f} min); peak RSS {result['peak_mb']:.0f} MB"
          f"\n  peak RSS while each task ran: " + ", ".join(f"{task} {mb:.0f} MB"
                                                          for task, mb in result["task_peak_mb"].items())
          + f" (before the first task: {result['before_tasks_mb']:.0f} MB)"
          f"\n  the load's spool at its fullest: {result['spool_peak_mb']:.0f} MB; faults injected: {result['faults']:,}")


@pytest.mark.parametrize("deferrable", [False, True], ids=["defaults", "deferred"])
def test_a_million_rows_with_the_defaults(tmp_path, deferrable):
    report(run_headline(tmp_path, deferrable=deferrable),
           "deferred" if deferrable else "the defaults (default_deferrable False)")


def test_a_million_rows_under_sustained_faults(tmp_path):
    """Issue 24: the same run with 30 % of requests failing on every route, in every way, against
    the same run without faults (both: the defaults plus retry_ambiguous_submits, on a server that
    honours Idempotency-Key)."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "faults").mkdir()
    clean = run_headline(tmp_path / "clean", deferrable=False, retry_ambiguous_submits=True)
    report(clean, "the defaults + retry_ambiguous_submits, no faults")
    faulty = run_headline(tmp_path / "faults", deferrable=False, faults=FAULTS, retry_ambiguous_submits=True)
    report(faulty, "the same under 30 % faults of every kind on every route")
    print("\n  under faults / without: " + ", ".join(
        f"{task} {faulty['seconds'][task] / clean['seconds'][task]:.2f}x" for task in ("submit", "wait", "load"))
        + f", total {faulty['total'] / clean['total']:.2f}x")
