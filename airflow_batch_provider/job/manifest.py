"""The job manifest: what was submitted, batch by batch, and which rows each batch carries.

A job's manifest lives in storage (a local directory or any ``ObjectStoragePath`` URI), not in XCom:
for a million rows it lists twenty thousand batches and a million ids. XCom carries only
:meth:`JobManifest.reference`-sized dicts: ids, counts and the manifest's path. What was *paid for*
while the job was being submitted is the ledger's business (:mod:`.ledger`).
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

from airflow.sdk import ObjectStoragePath, conf

from airflow_batch_provider.hooks.batch_api import BatchApiHook
from airflow_batch_provider.job.errors import LocalManifestDirError

MANIFEST_FILE = "manifest.json"
ROWS_FILE = "rows.arrow"  # Arrow IPC stream: custom_id, id, request_fingerprint, chunk
# Written before the first POST of a job: a later try that finds it, but no ledger (expired, cleared),
# knows an earlier try may have paid for chunks.
SUBMITTING_FILE = "submitting.json"


# The batch id of a chunk abandoned as ambiguous (on_ambiguous="abandon"): it may have been created and
# billed, but no id came back, so it is never polled and its rows land "missing" with this code.
ABANDONED = ""
ABANDONED_CODE = "submit_outcome_unknown"


class JobReference(TypedDict, total=False):
    """What a submit hands downstream through XCom: the manifest's location and the job's counts,
    small whatever the job's size. A dry run's report has no manifest, but ``dry_run`` and ``bytes``."""

    job_id: str
    manifest: str
    batch_api_conn_id: str  # the batch_api connection the job was submitted on (read it with connection_of)
    model: str
    batches: int
    rows: int
    invalid_rows: int
    skipped_rows: int
    dry_run: bool
    bytes: int


@dataclass(frozen=True)
class BatchRef:
    """One batch of a job: its id, and the rows of the job's rows file it holds."""
    batch_id: str
    first_row: int
    rows: int

    @property
    def abandoned(self) -> bool:
        """True for a chunk the task chose to go on without (its rows land missing)."""
        return self.batch_id == ABANDONED


@dataclass
class JobManifest:
    """A job's record once every chunk is accepted: its batches, request, id column and counts."""
    job_id: str
    batch_api_conn_id: str
    model: str
    request: dict[str, Any]
    id_column: str
    id_type: str
    input_fingerprint: str
    total_rows: int
    invalid_rows: int
    batches: list[BatchRef] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    # An incremental submit: rows left out because they landed already in this table
    # ({"conn_id", "table", "database"}); a load into the same table must keep them (upsert).
    skipped_rows: int = 0
    skipped_against: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The manifest as the JSON written beside the job's rows."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobManifest:
        """The manifest a job's JSON file describes."""
        data = json.loads(text)
        if "conn_id" in data:  # written before the connection id had one name
            data["batch_api_conn_id"] = data.pop("conn_id")
        data["batches"] = [BatchRef(**b) for b in data["batches"]]
        return cls(**data)

    def reference(self, location: str) -> JobReference:
        """The small dict that goes to XCom (well under 64 KB whatever the job's size)."""
        return {"job_id": self.job_id, "manifest": location, "batches": len(self.batches),
                "rows": self.total_rows, "invalid_rows": self.invalid_rows, "model": self.model,
                "batch_api_conn_id": self.batch_api_conn_id, "skipped_rows": self.skipped_rows}


def connection_of(job: Mapping[str, Any]) -> str:
    """The ``batch_api`` connection a job reference names: references written before the connection
    id had one name (in XCom from an older submit) call it ``conn_id``."""
    return job.get("batch_api_conn_id") or job.get("conn_id") or BatchApiHook.default_conn_name


def default_manifest_dir() -> str:
    """``[scaledown] manifest_dir``; else ``[common.io] xcom_objectstorage_path`` + ``/scaledown``
    (object storage every worker reaches); else ``scaledown_jobs`` beside the dags folder."""
    configured = conf.get("scaledown", "manifest_dir", fallback="")
    if configured:
        return configured
    shared = conf.get("common.io", "xcom_objectstorage_path", fallback="")
    if shared:
        return shared.rstrip("/") + "/scaledown"
    return str(Path(conf.get("core", "dags_folder")).parent / "scaledown_jobs")


LOCAL_EXECUTORS = ("LocalExecutor", "SequentialExecutor", "DebugExecutor")


def require_shared_manifest_dir(manifest_dir: str) -> None:
    """Refuse, before anything is paid for, a local ``manifest_dir`` that the sensor's trigger and
    the load, which may run on other hosts, could not read: under any executor but a local one (or
    ``dag.test()``), unless ``[scaledown] allow_local_manifest_dir`` says every host shares it."""
    if "://" in manifest_dir and not manifest_dir.startswith("file://"):
        return  # object storage
    if conf.getboolean("scaledown", "allow_local_manifest_dir", fallback=False) or _in_dag_test():
        return
    executors = [name.split(":")[-1].rsplit(".", 1)[-1].strip()
                 for name in conf.get("core", "executor", fallback="LocalExecutor").split(",") if name.strip()]
    remote = [name for name in executors if name not in LOCAL_EXECUTORS]
    if remote:
        raise LocalManifestDirError(
            f"manifest_dir {manifest_dir!r} is a local folder, but tasks run under {', '.join(remote)}: the "
            "sensor's trigger and the load may run on another host and could not read the job after its batches "
            "were paid for. Nothing was submitted. Set [scaledown] manifest_dir (AIRFLOW__SCALEDOWN__MANIFEST_DIR) "
            "or the task's manifest_dir to object storage every host reaches (e.g. s3://bucket/scaledown), or "
            "[common.io] xcom_objectstorage_path; if every worker and the triggerer mount this folder, set "
            "[scaledown] allow_local_manifest_dir = True.")


def _in_dag_test() -> bool:
    """True inside ``dag.test()`` / ``airflow dags test``, where every task runs in this process."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:  # pragma: no cover - another Airflow layout: be strict
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


def job_location(base: str | ObjectStoragePath, job_id: str) -> ObjectStoragePath:
    """The folder of job ``job_id`` under ``base``."""
    return ObjectStoragePath(str(base)) / job_id


def write_manifest(location: ObjectStoragePath, manifest: JobManifest, rows: Path | None = None) -> None:
    """Write the job's rows file (a local ``rows``, copied), then the manifest into the job's folder:
    from then on the job is whole."""
    location.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        with open(rows, "rb") as source, (location / ROWS_FILE).open("wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    (location / MANIFEST_FILE).write_text(manifest.to_json())  # last: a manifest means the job is whole


def mark_submitting(location: ObjectStoragePath, job_id: str) -> None:
    """Note, before the first POST, that a try began paying for this job."""
    location.mkdir(parents=True, exist_ok=True)
    (location / SUBMITTING_FILE).write_text(json.dumps({"job_id": job_id, "started_at": time.time()}))


def submitting_marked(location: ObjectStoragePath) -> bool:
    """True when an earlier try began paying for the job in this folder."""
    return (location / SUBMITTING_FILE).exists()


def existing_manifest(location: ObjectStoragePath) -> JobManifest | None:
    """The manifest an earlier try wrote at ``location`` once its job was wholly accepted, if any."""
    try:  # one read, not an existence check and a read: each is a round trip on object storage
        return JobManifest.from_json((location / MANIFEST_FILE).read_text())
    except FileNotFoundError:
        return None


def read_manifest(job: Mapping[str, Any] | str) -> tuple[JobManifest, ObjectStoragePath]:
    """The manifest named by a job reference (the submit task's XCom, also as a template renders
    it: ``"{{ ti.xcom_pull(task_ids='submit') }}"``) or by a manifest location."""
    location = ObjectStoragePath(str(_as_reference(job)["manifest"] if _is_reference(job) else job))
    return JobManifest.from_json((location / MANIFEST_FILE).read_text()), location


def job_reference(job: Mapping[str, Any] | str) -> JobReference:
    """The job reference dict, whichever form a task was given: the XCom value itself, the same
    rendered into a string by a template, or a manifest location."""
    if _is_reference(job):
        return _as_reference(job)
    manifest, location = read_manifest(job)
    return manifest.reference(str(location))


def _is_reference(job: Mapping[str, Any] | str) -> bool:
    return isinstance(job, Mapping) or str(job).lstrip().startswith("{")


def _as_reference(job: Mapping[str, Any] | str) -> JobReference:
    if isinstance(job, Mapping):
        return cast(JobReference, dict(job))
    try:  # Jinja renders a dict with str(): a Python literal, not JSON
        parsed = ast.literal_eval(job.strip())
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"job {job[:200]!r} is neither a job reference nor a manifest location") from exc
    if not isinstance(parsed, dict) or "manifest" not in parsed:
        raise ValueError(f"job {job[:200]!r} is not a job reference (no 'manifest' in it)")
    return cast(JobReference, parsed)
