"""A submit killed with SIGKILL at any point, against a server that ignores Idempotency-Key (every POST
that reaches it is billed): the ledger shows at most 4 x max_concurrent_submits chunks in flight,
the default retry never pays for one of them twice, and the documented way on for such a server
(``on_ambiguous="abandon"``) finishes the job with a bill of at most one batch per chunk."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_batch_provider.emulator.pytest_plugin import connection_json
from airflow_batch_provider.job.manifest import read_manifest
from tests.reliability.submit_child import CHUNKS
from tests.state_store import FileStateStore

ROOT = Path(__file__).resolve().parents[2]
BOUND = 4 * 8  # 4 x the default max_concurrent_submits


def child(tmp_path, connection, point="none", n=0, on_ambiguous="fail"):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.submit_child", str(tmp_path / "store"), str(tmp_path / "jobs"),
         point, str(n), on_ambiguous],
        cwd=ROOT, env={**os.environ, "AIRFLOW_CONN_BATCH_API_DEFAULT": connection},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def in_flight(tmp_path) -> int:
    return sum(len(window["in_flight"]) for window in FileStateStore(tmp_path / "store").values())


def retry_then_resolve(tmp_path, connection, server):
    """The default retry, then the documented resolution if it refuses: the bill after each."""
    code, out, err = finish(child(tmp_path, connection))
    assert code in (0, 3), err[-3000:]
    assert server.stats()["batches"] <= CHUNKS  # the default retry resends nothing that may exist
    if code == 3:
        assert 0 < json.loads(out.splitlines()[-1])["ambiguous"] <= BOUND
        code, out, err = finish(child(tmp_path, connection, on_ambiguous="abandon"))
        assert code == 0, err[-3000:]
    reference = json.loads(out.splitlines()[-1])
    manifest, _ = read_manifest(reference)
    accepted = [b for b in manifest.batches if not b.abandoned]
    assert len(manifest.batches) == CHUNKS and len({b.batch_id for b in accepted}) == len(accepted)
    assert server.stats()["batches"] <= CHUNKS


@pytest.fixture
def server(make_emulator):
    return make_emulator(ignore_idempotency_key=True, latency=0.2)


@pytest.mark.parametrize(("point", "n"), [("marked", 2), ("marked", 5), ("posting", 20), ("accepted", 30)])
def test_a_submit_killed_at_a_named_point(tmp_path, server, point, n):
    connection = connection_json(server, retry_initial_wait=0.01, retry_max_wait=0.05)
    code, _, err = finish(child(tmp_path, connection, point, n))
    assert code == -signal.SIGKILL, err[-3000:]
    assert in_flight(tmp_path) <= BOUND
    retry_then_resolve(tmp_path, connection, server)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_submit_killed_at_a_random_moment(tmp_path, server, seed):
    connection = connection_json(server, retry_initial_wait=0.01, retry_max_wait=0.05)
    process = child(tmp_path, connection)
    # 70 chunks at 8 a time, 0.2 s each, take about 2 s once the child has imported everything.
    deadline = time.monotonic() + 60
    while not (tmp_path / "store").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    finish(process)
    assert in_flight(tmp_path) <= BOUND
    retry_then_resolve(tmp_path, connection, server)
