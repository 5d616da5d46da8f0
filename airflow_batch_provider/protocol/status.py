"""One ``BatchStatus`` read from either documented response shape.

v1 (the live reference page): ``{"batch_id", "status": queued|processing|completed|failed,
"total_count", "completed_count", "failed_count"}``.
v2 (OpenAI-compatible revision): ``{"id", "object": "batch", "status": validating|in_progress|
completed|failed, "request_counts": {"total", "completed", "failed"}, "output_file_id", ...}``.

Counts follow the v2 meaning in both shapes: ``completed`` items succeeded, ``failed`` items
failed, so ``completed + failed`` items are done.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batch_provider.protocol.errors import UnexpectedResponseError


class BatchState(str, enum.Enum):
    """A batch's state, the same whichever of the two documented shapes the server answers with."""
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True once the batch will change no more (completed or failed)."""
        return self in (BatchState.COMPLETED, BatchState.FAILED)


# Raw statuses of both shapes. OpenAI's later statuses (finalizing, cancelled, expired) are mapped
# too, because the v2 object copies OpenAI's and a server may grow them without notice.
_STATES = {
    "queued": BatchState.QUEUED,
    "validating": BatchState.QUEUED,
    "processing": BatchState.RUNNING,
    "in_progress": BatchState.RUNNING,
    "finalizing": BatchState.RUNNING,
    "completed": BatchState.COMPLETED,
    "failed": BatchState.FAILED,
    "cancelling": BatchState.RUNNING,
    "cancelled": BatchState.FAILED,
    "expired": BatchState.FAILED,
}


def _count(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UnexpectedResponseError(f"{name} must be a non-negative integer, got {value!r}")
    return value


BATCHES_URL = "/v1/batches"  # POST a batch; GET {BATCHES_URL}/{id} and {BATCHES_URL}/{id}/output


@dataclass(frozen=True)
class BatchStatus:
    """A batch's status read from either documented shape, its counts of items."""
    batch_id: str
    state: BatchState
    raw_status: str
    total: int
    completed: int
    failed: int
    api_version: int  # which documented shape the server answered with (1 or 2)

    @property
    def done(self) -> int:
        """Items answered so far, with a result or an error."""
        return self.completed + self.failed

    @property
    def terminal(self) -> bool:
        """True once the batch will change no more."""
        return self.state.terminal

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchStatus:
        """Read either shape; anything else raises :class:`UnexpectedResponseError`."""
        if not isinstance(data, Mapping):
            raise UnexpectedResponseError(f"batch status must be an object, got {type(data).__name__}")
        raw = data.get("status")
        if raw not in _STATES:
            raise UnexpectedResponseError(f"unknown batch status {raw!r} in {dict(data)!r:.300}")
        if "request_counts" in data or data.get("object") == "batch":
            batch_id = data.get("id")
            counts = data.get("request_counts") or {}
            total, completed, failed = (counts.get(k) for k in ("total", "completed", "failed"))
            version = 2
        else:
            batch_id = data.get("batch_id")
            total, completed, failed = (
                data.get(k) for k in ("total_count", "completed_count", "failed_count")
            )
            version = 1
        if not isinstance(batch_id, str) or not batch_id:
            raise UnexpectedResponseError(f"batch status without a batch id: {dict(data)!r:.300}")
        return cls(
            batch_id=batch_id,
            state=_STATES[raw],
            raw_status=raw,
            total=_count(total, "total"),
            completed=_count(completed, "completed"),
            failed=_count(failed, "failed"),
            api_version=version,
        )
