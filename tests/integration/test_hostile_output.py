"""Output a broken or hostile server sends, loaded end to end: the emulator behind a loopback server
that rewrites each batch's output, landing in the real databases.

Paid for means landed: whatever a line holds, the rows land, each accounted for; a line or a value
no destination can take is counted, or lands as a row-level error, never fails or stalls the load.
"""

from __future__ import annotations

import json

import pytest

from tests.emulator_helpers import rewriting_proxy
from tests.integration.test_load_operators import database, env, frame, load, submit  # noqa: F401 - fixtures

CAP = 1 << 20


def _point_the_load_at(monkeypatch, url: str, server, **extra) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_BATCH_API_DEFAULT", json.dumps(
        {"conn_type": "batch_api", "host": url, "password": server.api_key,
         "extra": {"retry_initial_wait": 0.01, "retry_max_attempts": 2, **extra}}))


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_over_long_output_line_is_counted_and_the_other_rows_land(env, tmp_path, database, monkeypatch):  # noqa: F811
    """A 3 MiB line without an id (cap: 1 MiB, from the connection extra) in the middle of a batch's
    output: dropped as it streams, counted as unattributable, and every row lands."""
    server = env()
    job = submit(tmp_path, frame(30))

    def with_a_long_line(body: bytes) -> bytes:
        first, rest = body.split(b"\n", 1)
        return first + b"\n" + b'{"custom_id": "' + b"x" * (3 * CAP) + b"\n" + rest

    with rewriting_proxy(server, with_a_long_line) as url:
        _point_the_load_at(monkeypatch, url, server, max_output_line_bytes=CAP)
        summary = load(job, label_scores=True)
    assert (summary["ok"], summary["unattributable_lines"]) == (30, 3)  # one long line per batch of 10
    assert database("SELECT COUNT(*), COUNT(DISTINCT review_id) FROM review_labels WHERE status = 'ok'") == [(30, 30)]
