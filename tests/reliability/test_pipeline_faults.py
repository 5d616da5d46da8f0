"""Scenarios 1, 4, 5, 6: the real pipeline run by dag.test() (Airflow in this process, triggers in
line, retries honoured) against the emulator as its own process."""

from __future__ import annotations

import json
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from airflow_batch_provider.job.reconcile import Reconciliation
from tests.conftest import POSTGRES_DSN, load_dag
from tests.emulator_helpers import EmulatorProcess
from tests.reliability.conftest import API_KEY, drop, query, record

pytestmark = pytest.mark.usefixtures("airflow_db")


def set_faults(emulator, **settings):
    requests.put(emulator.url + "/_emulator/faults", json=settings, headers={"x-api-key": API_KEY},
                 timeout=10).raise_for_status()


def run_pipeline(**conf):
    run = load_dag("reliable_pipeline").test(run_conf=conf)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def landed(table):
    return query(f"SELECT COUNT(*), COUNT(DISTINCT id), COUNT(*) FILTER (WHERE status = 'ok') FROM {table}")[0]


def test_1_faults_during_submit_poll_and_output(pipeline_env, monkeypatch):
    emulator = pipeline_env
    # This server honours Idempotency-Key, so ambiguous submits may be retried (as documented).
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": emulator.url, "password": API_KEY,
        "extra": {"retry_initial_wait": 0.05, "retry_max_wait": 0.5, "retry_max_attempts": 12,
                  "retry_ambiguous_submits": True}}))
    drop("rel_faults")
    before = emulator.stats()
    set_faults(emulator, rate=0.25, kinds=["429", "500", "502", "503", "504", "reset", "reset_after", "slow"],
               retry_after=1, slow_seconds=0.3, routes=["submit", "status", "output"], seed=42)
    try:
        run, states = run_pipeline(rows=1000, table="rel_faults")
    finally:
        set_faults(emulator, rate=0.0)
    after = emulator.stats()
    injected = {k: v - before["faults_injected"].get(k, 0) for k, v in after["faults_injected"].items()}
    injected = {k: v for k, v in injected.items() if v}
    assert run.state == "success", states
    rows = landed("rel_faults")
    assert rows == (1000, 1000, 1000)
    assert after["batches"] - before["batches"] == 20  # 1000 rows / 50: not one extra batch
    assert sum(injected.values()) >= 10
    record(1, "API faults during submit, poll and output fetch",
           f"{sum(injected.values())} faults at 25 %: " + ", ".join(f"{k} ×{v}" for k, v in sorted(injected.items())),
           "1000/1000 rows landed once; 20 batches (0 extra)",
           rows=(1000, *rows[:2]), batches=(20, after["batches"] - before["batches"]))


def test_4_emulator_restarted_mid_batch(monkeypatch, tmp_path):
    data_dir = str(tmp_path / "emulator")
    emulator = EmulatorProcess(["--data-dir", data_dir, "--items-per-second", "150"], tmp_path, api_key=API_KEY).start()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": emulator.url, "password": API_KEY,
        "extra": {"retry_initial_wait": 0.2, "retry_max_wait": 1, "retry_max_attempts": 10}}))
    monkeypatch.setenv("AIRFLOW_CONN_RELIABILITY_DB", POSTGRES_DSN.replace("postgresql://", "postgres://"))
    drop("rel_restart")
    restarted = {}

    def restart_mid_batch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            stats = emulator.stats()
            if stats["batches"] == 10 and stats.get("batches_completed", 0) in range(2, 8):
                restarted["completed_before"] = stats.get("batches_completed", 0)
                emulator.kill()
                time.sleep(2)
                emulator.start()  # same port, same data directory
                restarted["after"] = emulator.stats()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=restart_mid_batch)
    killer.start()
    try:
        run, states = run_pipeline(rows=500, table="rel_restart")
    finally:
        killer.join()
        stats = emulator.stats()
        emulator.stop()
    assert restarted, "the emulator was never restarted mid-batch"
    assert run.state == "success", states
    rows = landed("rel_restart")
    assert rows == (500, 500, 500)
    assert stats["batches"] == 10 and stats["items"] == 500
    record(4, "Emulator killed (SIGKILL) and restarted mid-batch",
           f"restart after {restarted['completed_before']}/10 batches had completed",
           "500/500 rows landed once; 10 batches, none lost or repeated",
           rows=(500, *rows[:2]), batches=(10, stats["batches"]))


@pytest.mark.usefixtures("pipeline_env")
def test_5_database_connection_killed_mid_load(monkeypatch):
    drop("rel_dbfail")
    run, states = run_pipeline(rows=300, table="rel_dbfail")
    assert run.state == "success", states
    before = query("SELECT id, request_fingerprint, batch_id FROM rel_dbfail ORDER BY id")
    killed = {}

    def kill_load_connection():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pids = query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                         "AND pid <> pg_backend_pid() AND query ILIKE '%scaledown_staging%'")
            if pids:
                query(f"SELECT pg_terminate_backend({pids[0][0]})")
                killed["at"] = time.monotonic()
                killed["target_then"] = query("SELECT id, request_fingerprint, batch_id FROM rel_dbfail ORDER BY id")
                return
            time.sleep(0.02)

    # Every batch is read before the table is touched; the rows then come slowly out of the spool
    # (as a big job's would), so the load is still staging when its connection is killed.
    real_read = Reconciliation._read

    def slow_read(self, ref):
        time.sleep(0.4)
        return real_read(self, ref)

    monkeypatch.setattr(Reconciliation, "_read", slow_read)
    killer = threading.Thread(target=kill_load_connection)
    killer.start()
    try:
        run, states = run_pipeline(rows=300, table="rel_dbfail")  # a second run: the same ids again
    finally:
        killer.join()
    assert killed, "the load's connection was never seen"
    assert killed["target_then"] == before  # the failed load left the target as it was
    assert run.state == "success", states  # ... and its retry landed
    rows = landed("rel_dbfail")
    assert rows == (300, 300, 300)
    assert query("SELECT COUNT(DISTINCT batch_id) FROM rel_dbfail")[0][0] == 6  # the new job's batches only
    record(5, "Database connection killed mid-load (pg_terminate_backend)",
           "load's PostgreSQL backend terminated while staging; then its task retry",
           "target unchanged after the failure; retry landed 300/300 once", rows=(300, *rows[:2]))


BAD_INPUTS = {
    "nulls": "2 of 100 rows cannot be sent, so nothing was submitted: 3: text is null; 7: text is null",
    "empty": "the input holds no rows",
    "duplicates": "4: duplicate id",
    "non_utf8": "holds binary, not strings",
    "wrong_types": "holds double, not strings",
    "huge": "6: text is longer than 1000000 bytes",
}


def test_6_bad_inputs_are_refused_naming_the_rows(pipeline_env, capfd, tmp_path, monkeypatch):
    emulator = pipeline_env
    before = emulator.stats()
    refused = []
    for case, message in BAD_INPUTS.items():
        run, states = run_pipeline(case=case, rows=100, table="rel_bad")
        output = "".join(capfd.readouterr())
        assert run.state == "failed" and states["submit"] == "failed", (case, states)
        assert message in output, (case, output[-3000:])
        assert "up_for_retry" not in states.values()
        refused.append(case)
    pq.write_table(pa.table({"id": [1, 2], "body": ["a", "b"]}), tmp_path / "no_text.parquet")
    monkeypatch.setenv("RELIABILITY_PARQUET", str(tmp_path / "no_text.parquet"))
    run = load_dag("reliable_parquet").test()
    assert run.state == "failed" and "has no column 'text'; its columns are id, body" in "".join(capfd.readouterr())
    refused.append("parquet_missing_column")
    from airflow_batch_provider.protocol import Classify, Extract, InvalidRequestError, Label
    from airflow_batch_provider.protocol.requests import request_from_body
    for make, words in ((lambda: Classify([Label("a", "A?"), Label("a", "Again?")]), "duplicate label names: a"),
                        (lambda: Classify([]), "labels must be a non-empty list"),
                        (lambda: Label("urgent", ""), "rubric of label 'urgent' must not be empty"),
                        (lambda: Extract({}), "entities must be a non-empty mapping"),
                        (lambda: Extract({"price": ""}), "description of entity 'price' must not be empty"),
                        (lambda: request_from_body({"model": "translate"}), "unknown model 'translate'")):
        with pytest.raises(InvalidRequestError, match=words):
            make()
        refused.append(words.split(":")[0])
    after = emulator.stats()
    assert after["batches"] == before["batches"] and after["items"] == before["items"]
    assert after["requests"].get("submit", 0) == before["requests"].get("submit", 0)
    record(6, "Bad inputs", f"{len(refused)} kinds: nulls, empty frame, duplicate ids, non-UTF-8 bytes, wrong "
           "types, huge text, Parquet without the text column, invalid labels and entities, unknown model",
           "each refused naming the rows or parameter; 0 batches, 0 submit requests",
           batches=(0, after["batches"] - before["batches"]))


def test_9_ambiguous_submits_are_paid_for_once(pipeline_env, monkeypatch, tmp_path):
    """30 % of submissions are handled but their answer is lost (reset_after), task retries on.

    On a server that ignores Idempotency-Key with the default connection, no run may be billed for
    more batches than it has chunks: the run stops and names what may be paid instead. With the flag
    on a server that honours keys, every run ends with one batch per chunk and every row landed once.
    """
    chunks, runs = 20, 3
    ignoring = EmulatorProcess(["--ignore-idempotency-key", "--items-per-second", "3000"], tmp_path,
                               api_key=API_KEY).start()
    billed_ignoring, stopped = [], 0
    try:
        monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
            "conn_type": "batch_api", "host": ignoring.url, "password": API_KEY,
            "extra": {"retry_initial_wait": 0.05, "retry_max_wait": 0.5, "retry_max_attempts": 8}}))
        for number in range(runs):
            drop("rel_ambiguous")
            set_faults(ignoring, rate=0.3, kinds=["reset_after"], routes=["submit"], seed=100 + number)
            before = ignoring.stats()["batches"]
            run, states = run_pipeline(rows=chunks * 50, table="rel_ambiguous")
            billed_ignoring.append(ignoring.stats()["batches"] - before)
            assert billed_ignoring[-1] <= chunks, billed_ignoring
            if run.state == "success":
                assert landed("rel_ambiguous") == (1000, 1000, 1000)
            else:
                assert states["submit"] == "failed" and "up_for_retry" not in states.values(), states
                stopped += 1
    finally:
        ignoring.stop()
    emulator = pipeline_env
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps({
        "conn_type": "batch_api", "host": emulator.url, "password": API_KEY,
        "extra": {"retry_initial_wait": 0.05, "retry_max_wait": 0.5, "retry_max_attempts": 8,
                  "retry_ambiguous_submits": True}}))
    billed_honouring = []
    try:
        for number in range(runs):
            drop("rel_ambiguous")
            set_faults(emulator, rate=0.3, kinds=["reset_after"], routes=["submit"], seed=200 + number)
            before = emulator.stats()["batches"]
            run, states = run_pipeline(rows=chunks * 50, table="rel_ambiguous")
            set_faults(emulator, rate=0.0)
            billed_honouring.append(emulator.stats()["batches"] - before)
            assert run.state == "success", states
            assert billed_honouring[-1] == chunks
            assert landed("rel_ambiguous") == (1000, 1000, 1000)
    finally:
        set_faults(emulator, rate=0.0)
    record(9, "Ambiguous submits: 30 % of answers lost after the batch was made (reset_after), task retries on",
           f"{runs} runs against a server that ignores Idempotency-Key (default connection), {runs} against "
           "one that honours it (retry_ambiguous_submits)",
           f"ignoring: billed {billed_ignoring} of {chunks} chunks, {stopped} runs stopped naming the chunks, "
           f"none resent; honouring: billed {billed_honouring}, 1000/1000 rows landed once each run",
           rows=(1000, *landed("rel_ambiguous")[:2]),
           batches=(chunks * len(billed_honouring), sum(billed_honouring)))


SEEDS = (21, 22, 23)
EVERY_KIND = ["429", "500", "502", "503", "504", "reset", "reset_after"]


def default_connection(emulator, **extra) -> str:
    """The connection as users make it: the key, the host, and only what ``extra`` adds."""
    return json.dumps({"conn_type": "batch_api", "host": emulator.url, "password": API_KEY, "extra": extra})


def sustained_faults(emulator, seed):
    set_faults(emulator, rate=0.3, kinds=EVERY_KIND, routes=["submit", "status", "output"], retry_after=1, seed=seed)


def tries(run) -> str:
    return ", ".join(f"{ti.task_id} {ti.try_number}" for ti in run.get_task_instances())


def test_10_sustained_faults_with_the_default_connection(pipeline_env, monkeypatch):
    """Issue 24: 30 % of requests fail, on every route and in every way, with the connection's
    default retries (plus retry_ambiguous_submits: this server honours Idempotency-Key) and
    retries=2 on each task, as users set them. Every row lands once and the bill equals the chunks,
    in every run."""
    emulator, chunks = pipeline_env, 20
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", default_connection(emulator, retry_ambiguous_submits=True))
    monkeypatch.setenv("RELIABILITY_TASK_RETRIES", "2")
    runs = []
    for seed in SEEDS:
        drop("rel_sustained")
        before = emulator.stats()
        sustained_faults(emulator, seed)
        started = time.monotonic()
        try:
            run, states = run_pipeline(rows=chunks * 50, table="rel_sustained")
        finally:
            set_faults(emulator, rate=0.0)
        after = emulator.stats()
        runs.append({"seed": seed, "seconds": round(time.monotonic() - started),
                     "billed": after["batches"] - before["batches"], "landed": landed("rel_sustained"),
                     "faults": sum(after["faults_injected"].values()) - sum(before["faults_injected"].values()),
                     "tries": tries(run)})
        assert run.state == "success", (seed, states, runs)
        assert runs[-1]["billed"] == chunks and after["items"] - before["items"] == chunks * 50, runs
        assert runs[-1]["landed"] == (1000, 1000, 1000), runs
    record(10, "Sustained faults: 30 % of requests on every route fail in every way, default connection "
               "(+ retry_ambiguous_submits), retries=2 per task",
           f"seeds {', '.join(str(r['seed']) for r in runs)}: " + "; ".join(
               f"{r['faults']} faults, {r['seconds']} s (tries: {r['tries']})" for r in runs),
           f"{len(runs)} of {len(runs)} runs landed 1000/1000 rows once; billed {[r['billed'] for r in runs]} "
           f"of {chunks} chunks",
           rows=(1000, *runs[-1]["landed"][:2]), batches=(chunks * len(runs), sum(r["billed"] for r in runs)))


def test_11_sustained_faults_on_a_server_that_ignores_keys(pipeline_env, monkeypatch, tmp_path, capfd):
    """The same faults against a server that ignores Idempotency-Key, with the default connection:
    an answer lost after the batch was made cannot be told from one that made none, so no run may be
    billed for more than its chunks, and a run that cannot go on without risking it stops, saying
    what to do."""
    chunks = 20
    ignoring = EmulatorProcess(["--ignore-idempotency-key", "--items-per-second", "3000"], tmp_path,
                               api_key=API_KEY).start()
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", default_connection(ignoring))
    monkeypatch.setenv("RELIABILITY_TASK_RETRIES", "2")
    billed, stopped = [], 0
    try:
        for seed in SEEDS:
            drop("rel_sustained")
            before = ignoring.stats()["batches"]
            sustained_faults(ignoring, seed)
            capfd.readouterr()
            run, states = run_pipeline(rows=chunks * 50, table="rel_sustained")
            output = "".join(capfd.readouterr())
            billed.append(ignoring.stats()["batches"] - before)
            assert billed[-1] <= chunks, billed
            if run.state == "success":
                assert billed[-1] == chunks and landed("rel_sustained") == (1000, 1000, 1000)
                continue
            stopped += 1
            assert states["submit"] == "failed" and "up_for_retry" not in states.values(), states
            assert "Nothing was resent, so nothing is paid twice" in output
            assert "set retry_ambiguous_submits on the batch_api connection if the server honours" in output
    finally:
        ignoring.stop()
    record(11, "Sustained faults (as 10) against a server that ignores Idempotency-Key, default connection",
           f"seeds {', '.join(map(str, SEEDS))}",
           f"billed {billed} of {chunks} chunks (never more); {stopped} of {len(SEEDS)} runs stopped at the submit "
           "naming the chunks that may be paid and the two ways on", batches=(chunks * len(SEEDS), sum(billed)))
