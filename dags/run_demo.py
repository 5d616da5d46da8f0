"""`make demo`: the enrich_reviews DAG end to end on this machine, then what landed.

Starts the ScaleDown emulator on a free loopback port, points the ``batch_api_default`` connection
at it and ``reviews_db`` at a fresh SQLite file, runs ``airflow dags test enrich_reviews`` (triggers
run in line) showing progress, prints the landed tables, and stops the emulator. Exits non-zero if
anything failed.

``--airflow standalone`` instead starts a real scheduler, triggerer and UI (http://localhost:8080)
with the same connections, to watch the DAG run there; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("SCALEDOWN_DEMO_DIR", ROOT / ".demo"))  # elsewhere for tests
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PROGRESS = re.compile(r"Job job-|Submitted [\d,]+ of|Waiting for job|finished:|landed:|Resuming"
                      r"|DAG TEST\] (starting|end) task|ERROR|Traceback|Error:")


def start_emulator(key: str) -> tuple[subprocess.Popen, str]:
    port_file = DEMO / "emulator.port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_batch_provider.emulator", "--port", "0", "--port-file", str(port_file),
         f"--api-key={key}", "--data-dir", str(DEMO / "emulator"), "--items-per-second", "400",
         "--start-delay", "1", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=open(DEMO / "emulator.log", "wb"))
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the emulator did not start; see {DEMO / 'emulator.log'}")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


def environment(url: str, key: str) -> dict[str, str]:
    home = DEMO / "airflow"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__SCALEDOWN__MANIFEST_DIR": str(DEMO / "jobs"),
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",  # a triggerer runs (inline with `dags test`)
        # `dags test` registers the DAG too: paused, a later `--airflow standalone` run would only queue.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW_CONN_BATCH_API_DEFAULT": json.dumps({"conn_type": "batch_api", "host": url, "password": key}),
        "AIRFLOW_CONN_REVIEWS_DB": json.dumps({"conn_type": "sqlite", "host": str(DEMO / "reviews.db")}),
    }


def run_dags_test(env: dict[str, str]) -> int:
    print("running `airflow dags test enrich_reviews` (full log: .demo/dags-test.log) ...", flush=True)
    with open(DEMO / "dags-test.log", "w") as log:
        process = subprocess.Popen([AIRFLOW, "dags", "test", "enrich_reviews"], env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in process.stdout:
            log.write(line)
            if PROGRESS.search(line):
                message = re.sub(r"\s+\[[\w.]+\]\s+loc=.*$", "", line.strip())
                print("  " + re.sub(r"^\S+Z \[\w+\s*\] ", "", message)[:160], flush=True)
        return process.wait()


def report(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        def q(sql):
            return conn.execute(sql).fetchall()
        print("\nwhat landed in .demo/reviews.db:")
        for table in ("review_sentiment", "review_entities", "review_summaries"):
            rows = dict(q(f"SELECT status, COUNT(*) FROM {table} GROUP BY status"))
            print(f"  {table:<18} {sum(rows.values()):4} rows  {rows}")
        print("\nsentiment (top label):")
        for label, count in q("SELECT top_label, COUNT(*) FROM review_sentiment GROUP BY 1 ORDER BY 2 DESC"):
            print(f"  {label:<9} {count:4}  {'#' * (count // 5)}")
        print("\na few extracted entities:")
        for row in q("SELECT review_id, entity_product, entity_price, entity_brand, entity_person, entity_date "
                     "FROM review_entities WHERE status = 'ok' ORDER BY review_id LIMIT 5"):
            print(f"  review {row[0]}: product={row[1]!r} price={row[2]!r} brand={row[3]!r} "
                  f"person={row[4]!r} date={row[5]!r}")
        review_id, summary = q("SELECT review_id, summary FROM review_summaries WHERE status = 'ok' "
                               "ORDER BY review_id LIMIT 1")[0]
        print(f"\nsummary of review {review_id}:\n  " + summary.replace("\n", "\n  "))
        return q("SELECT COUNT(*) FROM review_sentiment WHERE status = 'ok'")[0][0] == 300


def standalone(env: dict[str, str]) -> int:
    # standalone starts its components as `airflow ...` commands: they must be found on PATH.
    env = {**env, "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{env.get('PATH', '')}"}
    print("starting `airflow standalone`: UI on http://localhost:8080 (its admin password is printed below "
          "and kept in .demo/airflow/); trigger enrich_reviews there. Ctrl-C stops everything.", flush=True)
    process = subprocess.Popen([AIRFLOW, "standalone"], env=env, start_new_session=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # and a plain kill, the same way
    try:
        return process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)  # components shut down gracefully on SIGINT
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airflow", choices=["dags-test", "standalone"], default="dags-test")
    args = parser.parse_args()
    DEMO.mkdir(exist_ok=True)
    (DEMO / "reviews.db").unlink(missing_ok=True)
    key = secrets.token_urlsafe(24)
    started = time.monotonic()
    emulator, url = start_emulator(key)
    print(f"emulator (stand-in engines, not ML) on {url}")
    try:
        env = environment(url, key)
        subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
        # The demo's DAGs, if an earlier demo (before DAGS_ARE_PAUSED_AT_CREATION above) left them
        # paused; on a fresh home none is registered yet, which the command reports and we ignore.
        subprocess.run([AIRFLOW, "dags", "unpause", "--yes", "--treat-dag-id-as-regex", ".*"], env=env,
                       capture_output=True)
        if args.airflow == "standalone":
            return standalone(env)
        code = run_dags_test(env)
        if code != 0:
            print(f"\n`airflow dags test` failed (exit {code}); see .demo/dags-test.log", file=sys.stderr)
            return code
        ok = report(DEMO / "reviews.db")
        print(f"\ndone in {time.monotonic() - started:.0f} s")
        return 0 if ok else 1
    finally:
        emulator.terminate()
        emulator.wait(15)


if __name__ == "__main__":
    sys.exit(main())
