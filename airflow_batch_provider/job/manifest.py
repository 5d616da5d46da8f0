"""The job manifest: what was submitted, batch by batch, and which rows each batch carries.

A job's manifest lives in storage (a local directory or any ``ObjectStoragePath`` URI), not in XCom:
for a million rows it lists twenty thousand batches and a million ids. XCom carries only
:meth:`JobManifest.reference`-sized dicts: ids, counts and the manifest's path. What was *paid for*
while the job was being submitted is the ledger's business (:mod:`.ledger`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
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


def default_manifest_dir() -> str:
    from airflow.configuration import conf

    return conf.get("scaledown", "manifest_dir",
                    fallback=str(Path(conf.get("core", "dags_folder")).parent / "scaledown_jobs"))


def job_location(base: str | ObjectStoragePath, job_id: str) -> ObjectStoragePath:
    return ObjectStoragePath(str(base)) / job_id


def write_manifest(location: ObjectStoragePath, manifest: JobManifest) -> None:
    location.mkdir(parents=True, exist_ok=True)
    (location / MANIFEST_FILE).write_text(manifest.to_json())


def read_manifest(job: Mapping[str, Any] | str) -> tuple[JobManifest, ObjectStoragePath]:
    """The manifest named by a job reference (the submit task's XCom) or a manifest location."""
    location = ObjectStoragePath(job["manifest"] if isinstance(job, Mapping) else job)
    return JobManifest.from_json((location / MANIFEST_FILE).read_text()), location
