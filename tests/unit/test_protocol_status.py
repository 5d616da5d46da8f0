import pytest

from airflow_batch_provider.protocol import BatchState, BatchStatus, UnexpectedResponseError


def test_v1_submit_and_status_shapes():
    submitted = BatchStatus.from_json({"batch_id": "batch-abc123", "status": "queued", "total_count": 3})
    assert (submitted.batch_id, submitted.state, submitted.total, submitted.done) == \
        ("batch-abc123", BatchState.QUEUED, 3, 0)
    done = BatchStatus.from_json({"batch_id": "batch-abc123", "status": "completed", "total_count": 3,
                                  "completed_count": 2, "failed_count": 1})
    assert done.state is BatchState.COMPLETED and done.terminal and done.api_version == 1
    assert (done.completed, done.failed, done.done) == (2, 1, 3)


def test_v2_object_shape():
    status = BatchStatus.from_json({
        "id": "batch_abc123", "object": "batch", "endpoint": "/v1/chat/completions",
        "input_file_id": None, "completion_window": "24h", "status": "validating",
        "output_file_id": None, "error_file_id": None, "created_at": 1782819284,
        "request_counts": {"total": 3, "completed": 0, "failed": 0}, "metadata": None})
    assert (status.batch_id, status.state, status.total, status.api_version) == \
        ("batch_abc123", BatchState.QUEUED, 3, 2)


@pytest.mark.parametrize(
    ("raw", "state"),
    [("queued", "queued"), ("processing", "running"), ("completed", "completed"), ("failed", "failed"),
     ("validating", "queued"), ("in_progress", "running"), ("finalizing", "running"),
     ("cancelled", "failed"), ("expired", "failed")],
)
def test_every_documented_status_is_normalised(raw, state):
    assert BatchStatus.from_json({"batch_id": "b", "status": raw}).state.value == state
    assert BatchStatus.from_json({"id": "b", "object": "batch", "status": raw,
                                  "request_counts": {}}).state.value == state


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"batch_id": "b", "status": "done"}, "unknown batch status 'done'"),
        ({"status": "queued"}, "without a batch id"),
        ({"batch_id": "b", "status": "queued", "total_count": -1}, "total must be a non-negative integer"),
        ({"batch_id": "b", "status": "queued", "completed_count": "3"}, "completed must be a non-negative"),
        ([], "must be an object"),
    ],
)
def test_unreadable_status_is_an_error_not_a_guess(body, message):
    with pytest.raises(UnexpectedResponseError, match=message):
        BatchStatus.from_json(body)
