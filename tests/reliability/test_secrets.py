"""Scenario 7: after all the others, the API key is nowhere but in the connection — not in task
logs, XCom, trigger rows, rendered templates, or files the jobs wrote. Runs last (file order)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from cryptography.fernet import Fernet

from tests.reliability.conftest import API_KEY, CLUSTERS, manifest_root, record


def files_with_key(root: Path, key: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if key in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


def metadata_rows_with_key(db: Path, fernet_key: str | None) -> list[str]:
    found = []
    with sqlite3.connect(db) as conn:
        for table in ("xcom", "rendered_task_instance_fields", "task_instance", "dag_run", "trigger", "log"):
            for row in conn.execute(f"SELECT * FROM {table}"):
                for value in row:
                    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                    if API_KEY in text:
                        found.append(f"{db.name}:{table}")
        if fernet_key:
            for (kwargs,) in conn.execute("SELECT kwargs FROM trigger"):
                plain = kwargs if kwargs.startswith("{") else Fernet(fernet_key.encode()).decrypt(kwargs.encode()).decode()
                if API_KEY in plain:
                    found.append(f"{db.name}:trigger.kwargs")
    return found


def test_7_the_key_leaks_nowhere(tmp_path):
    key = API_KEY.encode()
    in_process_home = Path(os.environ["AIRFLOW_HOME"])
    homes = [in_process_home, *(cluster.home for cluster in CLUSTERS)]
    assert CLUSTERS, "run the whole suite: the real-process scenarios must have run first"

    # The scan must be able to find the key, or it proves nothing.
    canary = in_process_home / "canary.txt"
    canary.write_bytes(b"..." + key + b"...")
    assert files_with_key(in_process_home, key) == [str(canary)]
    canary.unlink()

    leaks = []
    for home in homes:
        leaks += files_with_key(home, key)  # logs, manifests, spools, rows files, emulator files
        db = home / "airflow.db"
        fernet = next((c.fernet_key for c in CLUSTERS if c.home == home), None)
        leaks += metadata_rows_with_key(db, fernet)
    leaks += files_with_key(manifest_root(), key)
    assert leaks == []
    logs = sum(1 for home in homes for _ in (home / "logs").rglob("*") if _.is_file()) if homes else 0
    record(7, "Secrets", "a distinctive API key used by every scenario above",
           f"found in 0 places: {logs} log files, XCom, trigger rows (decrypted), rendered fields, "
           "manifests and every other file under the Airflow homes")
