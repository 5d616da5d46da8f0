"""Output a broken or hostile server sends, loaded end to end: the emulator behind a loopback server
that rewrites each batch's output, landing in the real databases.

Paid for means landed: whatever a line holds, the rows land, each accounted for; a line or a value
no destination can take is counted, or lands as a row-level error, never fails or stalls the load.
"""

from __future__ import annotations

import json

import msgspec
import pytest

from airflow_batch_provider.operators.load import TooManyFailedRowsError
from tests.emulator_helpers import rewriting_proxy
from tests.integration.test_load_operators import frame, load, submit

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


# -- values no destination can store: row-level errors, the same on every destination --------------------

CONTENT = {  # review_id -> the classify result the server sends for it
    1: '{"top_label": "Positive", "scores": {"Positive": "NaN", "Very negative!": 0.1}}',
    2: '{"top_label": "Positive", "scores": {"Positive": 0.9, "Very negative!": "-Infinity"}}',
    3: '{"top_label": "Positive", "scores": {"Positive": 1e400, "Very negative!": 0.1}}',
    4: '{"top_label": "Positive", "scores": {"Positive": true, "Very negative!": 0.1}}',
    5: '{"top_label": "Positive", "scores": {"Positive": 0.9}, "reasoning": {"why": "wrong type"}}',
    6: '{"top_label": "Positive", "scores": {"Positive": "0.75"}, "reasoning": "a\\u0000b"}',  # lands, NUL replaced
}


def _rewrite_contents(body: bytes) -> bytes:
    lines = []
    for raw in body.splitlines():
        line = msgspec.json.decode(raw)
        review_id = int(line["custom_id"])
        if review_id in CONTENT:
            line["response"]["body"]["choices"][0]["message"]["content"] = CONTENT[review_id]
        lines.append(msgspec.json.encode(line))
    return b"\n".join(lines) + b"\n"


def test_values_a_destination_cannot_store_land_as_invalid_content_errors(env, tmp_path, database, monkeypatch):  # noqa: F811
    server = env()
    job = submit(tmp_path, frame(30))
    with rewriting_proxy(server, _rewrite_contents) as url:
        _point_the_load_at(monkeypatch, url, server)
        # counted by max_failed_ratio (5 of 30), after landing
        with pytest.raises(TooManyFailedRowsError, match=r"5 of 30 rows failed \(5 error, 0 missing\)"):
            load(job, label_scores=True, max_failed_ratio=0.1)
    errors = database("SELECT review_id, status, error_code FROM review_labels WHERE status <> 'ok' ORDER BY review_id")
    assert errors == [(i, "error", "invalid_content") for i in (1, 2, 3, 4, 5)]
    assert database("SELECT COUNT(*) FROM review_labels WHERE status = 'ok' AND score_positive <= 1") == [(25,)]
    assert database("SELECT reasoning, score_positive FROM review_labels WHERE review_id = 6") == [("a\ufffdb", 0.75)]
