"""The job's record as it travels (XCom reference) and as it is stored (manifest JSON): the connection
id has one name, and what older submits wrote, under ``conn_id``, still reads."""

from __future__ import annotations

import json

from airflow_batch_provider.job.manifest import BatchRef, JobManifest, connection_of


def manifest() -> JobManifest:
    return JobManifest(job_id="job-1", batch_api_conn_id="scaledown_eu", model="summarize", request={},
                       id_column="id", id_type="int64", input_fingerprint="f", total_rows=2, invalid_rows=0,
                       batches=[BatchRef("b1", 0, 2)])


def test_a_manifest_and_its_reference_name_the_connection_batch_api_conn_id():
    written = manifest()
    assert JobManifest.from_json(written.to_json()) == written
    reference = written.reference("s3://bucket/job-1")
    assert "conn_id" not in reference and "conn_id" not in json.loads(written.to_json())
    assert connection_of(reference) == "scaledown_eu"


def test_what_older_submits_wrote_under_conn_id_still_reads():
    old = json.loads(manifest().to_json())
    old["conn_id"] = old.pop("batch_api_conn_id")
    assert JobManifest.from_json(json.dumps(old)).batch_api_conn_id == "scaledown_eu"
    assert connection_of({"job_id": "job-1", "manifest": "m", "conn_id": "scaledown_eu"}) == "scaledown_eu"
    assert connection_of({"job_id": "job-1", "manifest": "m"}) == "batch_api_default"
