"""The job manifest (what was submitted) and the durable submission progress (what was paid for).

A job's manifest lives in storage (a local directory or any ``ObjectStoragePath`` URI), not in XCom:
for a million rows it lists twenty thousand batches and a million ids. XCom carries only
:func:`JobReference`-sized dicts: ids, counts and the manifest's path.

Progress lives in Airflow's ``task_state_store`` of the submitting task instance, one key per
accepted chunk, written before and after each paid call, so a retried or crashed task re-attaches
to the batches already accepted and submits only the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow.sdk import ObjectStoragePath

MANIFEST_FILE = "manifest.json"
ROWS_FILE = "rows.arrow"  # Arrow IPC stream: custom_id, id, request_fingerprint, chunk


@dataclass(frozen=True)
class BatchRef:
    batch_id: str
    first_row: int
    rows: int


@dataclass
class JobManifest:
    job_id: str
    conn_id: str
    model: str
    request: dict[str, Any]
    id_column: str
    id_type: str
    input_fingerprint: str
    total_rows: int
    invalid_rows: int
    batches: list[BatchRef] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobManifest:
        data = json.loads(text)
        data["batches"] = [BatchRef(**b) for b in data["batches"]]
        return cls(**data)

    def reference(self, location: str) -> dict[str, Any]:
        """The small dict that goes to XCom (well under 64 KB whatever the job's size)."""
        return {"job_id": self.job_id, "manifest": location, "batches": len(self.batches),
                "rows": self.total_rows, "invalid_rows": self.invalid_rows, "model": self.model,
                "conn_id": self.conn_id}


def job_location(base: str | ObjectStoragePath, job_id: str) -> ObjectStoragePath:
    return ObjectStoragePath(str(base)) / job_id


def write_manifest(location: ObjectStoragePath, manifest: JobManifest) -> None:
    location.mkdir(parents=True, exist_ok=True)
    (location / MANIFEST_FILE).write_text(manifest.to_json())


def read_manifest(job: Mapping[str, Any] | str) -> tuple[JobManifest, ObjectStoragePath]:
    """The manifest named by a job reference (the submit task's XCom) or a manifest location."""
    location = ObjectStoragePath(job["manifest"] if isinstance(job, Mapping) else job)
    return JobManifest.from_json((location / MANIFEST_FILE).read_text()), location


class SubmissionProgress:
    """Which chunks of this task instance's job were accepted, kept in ``task_state_store``.

    Keys: ``scaledown:job`` -> {job_id, fingerprint, chunks}; ``scaledown:chunk:<k>`` -> batch id
    once accepted, or ``"in-flight"`` while the paid call is under way (then a retry resubmits with
    the same Idempotency-Key).
    """

    JOB_KEY = "scaledown:job"

    def __init__(self, store: Any) -> None:
        self.store = store

    def job(self) -> dict[str, Any] | None:
        return self.store.get(self.JOB_KEY) if self.store is not None else None

    def start(self, job_id: str, fingerprint: str, chunks: int) -> None:
        if self.store is not None:
            self.store.set(self.JOB_KEY, {"job_id": job_id, "fingerprint": fingerprint, "chunks": chunks})

    def accepted(self, chunk: int) -> str | None:
        if self.store is None:
            return None
        value = self.store.get(f"scaledown:chunk:{chunk}")
        return value if value and value != "in-flight" else None

    def mark_in_flight(self, chunk: int) -> None:
        if self.store is not None:
            self.store.set(f"scaledown:chunk:{chunk}", "in-flight")

    def mark_accepted(self, chunk: int, batch_id: str) -> None:
        if self.store is not None:
            self.store.set(f"scaledown:chunk:{chunk}", batch_id)

    def forget(self, chunks: int) -> None:
        if self.store is not None:
            for chunk in range(chunks):
                self.store.delete(f"scaledown:chunk:{chunk}")
            self.store.delete(self.JOB_KEY)
