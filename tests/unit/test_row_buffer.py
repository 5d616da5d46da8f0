"""Rows of many API batches in one record batch: each row keeps its batch, status and reason."""

import json

import pyarrow as pa

from airflow_batch_provider.destinations.table import coalesced
from airflow_batch_provider.protocol import ClassifyResult, ItemError, OutputLine
from airflow_batch_provider.tabular.results_to_columns import ResultColumns

COLUMNS = ResultColumns(model="classify", request={"labels": [{"name": "good"}, {"name": "bad"}]},
                        id_column="id", id_type=pa.int64(), label_scores=True)


def _ok(cid, good):
    return OutputLine(cid, "classify", ClassifyResult("good" if good > 0.5 else "bad", {"good": good, "bad": 1 - good}), None)


def test_rows_of_several_batches_keep_their_batch_status_and_reason():
    buffer = COLUMNS.buffer()
    buffer.add_lines("b1", [1, 2], ["f1", "f2"],
                     [_ok("1", 0.9), OutputLine("2", "classify", None, ItemError("bad_input", "empty"))])
    buffer.add_missing("b1", [3], ["f3"], "no_output_line", "no line")
    buffer.add_missing("b2", [4, 5], ["f4", "f5"], "batch_failed", "batch b2 is failed")
    buffer.add_lines("b3", [6], ["f6"], [OutputLine("6", "classify", None, None)])
    assert len(buffer) == 6
    rows = buffer.to_record_batch().to_pylist()
    assert [(r["id"], r["batch_id"], r["status"], r["error_code"]) for r in rows] == [
        (1, "b1", "ok", None), (2, "b1", "error", "bad_input"), (3, "b1", "missing", "no_output_line"),
        (4, "b2", "missing", "batch_failed"), (5, "b2", "missing", "batch_failed"), (6, "b3", "error", "no_result")]
    assert json.loads(rows[0]["scores"]) == {"good": 0.9, "bad": 1 - 0.9}
    assert rows[0]["score_good"] == 0.9 and rows[1]["score_good"] is None
    assert rows[4]["error_message"] == "batch b2 is failed" and rows[0]["error_message"] is None
    assert {r["request_fingerprint"] for r in rows} == {f"f{i}" for i in range(1, 7)}
    assert len({r["loaded_at"] for r in rows}) == 1 and rows[0]["loaded_at"].tzinfo is not None


def test_coalesced_batches_are_large_and_keep_every_row_in_order():
    small = [pa.record_batch({"x": list(range(i * 50, i * 50 + 50))}) for i in range(100)]
    small.insert(3, pa.record_batch({"x": pa.array([], pa.int64())}))
    out = list(coalesced(small, rows=1000))
    assert [b.num_rows for b in out] == [1000] * 5
    assert pa.Table.from_batches(out).column("x").to_pylist() == list(range(5000))
    assert list(coalesced([], rows=10)) == []


def test_a_buffer_where_every_row_is_ok_has_empty_error_columns():
    buffer = COLUMNS.buffer()
    buffer.add_lines("b1", [7, 8], ["f7", "f8"], [_ok("7", 0.2), _ok("8", 0.7)])
    batch = buffer.to_record_batch()
    assert batch.column("status").to_pylist() == ["ok", "ok"] and batch.column("model").to_pylist() == ["classify"] * 2
    assert batch.column("error_code").null_count == 2 and batch.column("error_message").null_count == 2
    assert batch.column("top_label").to_pylist() == ["bad", "good"] and batch.schema == COLUMNS.schema
