"""The emulator over real HTTP on loopback, checked against the API contract."""

from __future__ import annotations

import json
import time

import pytest
import requests

from airflow_batch_provider.protocol import BatchStatus, decode_output_line

SPEC_EXAMPLE = (
    b'{"custom_id":"sum-1","method":"POST","url":"/v1/chat/completions","body":{"model":"summarize","text":"Artificial intelligence is the simulation of human intelligence by machines. Research areas include learning, reasoning and perception. It is used in many industries.","instructions":"Use bullet points."}}\n'
    b'{"custom_id":"ext-1","method":"POST","url":"/v1/chat/completions","body":{"model":"extract","text":"Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st.","entities":{"company":"Name of the company","revenue":"Revenue figure","ceo":"Name of the CEO"}}}\n'
    b'{"custom_id":"cls-1","method":"POST","url":"/v1/chat/completions","body":{"model":"classify","text":"This product is fantastic \xe2\x80\x94 fast shipping and great quality!","labels":[{"name":"Positive","rubric":"Does this text express satisfaction, praise, or approval?"},{"name":"Negative","rubric":"Does this text express dissatisfaction, complaints, or criticism?"}]}}\n'
)


def _headers(server, **extra):
    return {"x-api-key": server.api_key, "content-type": "application/jsonl", **extra}


def submit(server, body, **headers):
    return requests.post(server.url + "/v1/batches", data=body, headers=_headers(server, **headers), timeout=60)


def wait_done(server, batch_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = BatchStatus.from_json(
            requests.get(f"{server.url}/v1/batches/{batch_id}", headers=_headers(server), timeout=10).json())
        if status.terminal:
            return status
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish")


def output(server, batch_id):
    response = requests.get(f"{server.url}/v1/batches/{batch_id}/output", headers=_headers(server), timeout=60)
    response.raise_for_status()
    return [decode_output_line(raw) for raw in response.content.splitlines() if raw.strip()]


def test_spec_example_v1_end_to_end(make_emulator):
    server = make_emulator()
    response = submit(server, SPEC_EXAMPLE)
    assert response.status_code == 200
    assert response.json()["status"] == "queued" and response.json()["total_count"] == 3
    assert set(response.json()) == {"batch_id", "status", "total_count", "completed_count", "failed_count"}
    status = wait_done(server, response.json()["batch_id"])
    assert (status.raw_status, status.completed, status.failed) == ("completed", 3, 0)
    lines = {line.custom_id: line for line in output(server, status.batch_id)}
    assert set(lines) == {"sum-1", "ext-1", "cls-1"}
    assert lines["sum-1"].result.summary.startswith("• ")
    assert [e.text for e in lines["ext-1"].result.entities] == ["Apple Inc.", "$94.8B", "Tim Cook"]
    assert lines["cls-1"].result.top_label == "Positive"


def test_v2_shape_output_file_and_entity_spelling(make_emulator):
    server = make_emulator(api_version=2, start_delay=0.5)
    created = submit(server, SPEC_EXAMPLE).json()
    assert created["object"] == "batch" and created["status"] == "validating"
    assert created["id"].startswith("batch_") and created["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    not_ready = requests.get(f"{server.url}/v1/batches/{created['id']}/output", headers=_headers(server))
    assert not_ready.status_code == 404 and "not ready" in not_ready.json()["detail"]
    status = wait_done(server, created["id"])
    raw = requests.get(f"{server.url}/v1/batches/{created['id']}", headers=_headers(server)).json()
    assert raw["output_file_id"] == f"{created['id']}_output" and status.api_version == 2
    entity = next(line for line in output(server, status.batch_id) if line.custom_id == "ext-1").result.entities[0]
    assert entity.start == 0 and entity.end == len("Apple Inc.") and entity.context


def test_v2_refuses_more_than_50_requests_and_queues_nothing(make_emulator):
    server = make_emulator(api_version=2)
    lines = b"".join(b'{"custom_id":"%d","body":{"model":"summarize","text":"t"}}\n' % i for i in range(51))
    response = submit(server, lines)
    assert response.status_code == 400 and "at most 50" in response.json()["detail"]
    assert submit(server, lines.split(b"\n", 1)[1]).status_code == 200  # exactly 50 is fine
    assert server.stats()["batches"] == 1


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_401_without_or_with_a_wrong_key(make_emulator, key):
    server = make_emulator()
    headers = {} if key is None else {"x-api-key": key}
    for method, path in (("POST", "/v1/batches"), ("GET", "/v1/batches/x"), ("GET", "/v1/batches/x/output"),
                         ("POST", "/classify"), ("GET", "/_emulator/stats")):
        response = requests.request(method, server.url + path, headers=headers, data=SPEC_EXAMPLE)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "missing or invalid x-api-key"}
    assert requests.get(server.url + "/v1/batches/x", headers={"Authorization": f"Bearer {server.api_key}"}).status_code == 401


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (b'{"custom_id":"x","body":{"model":"translate","text":"t"}}', "line 3 (x): invalid model 'translate'"),
        (b'{"custom_id":"x","body":{"model":"summarize","text":"t"', "line 3: malformed JSON"),
        (b'[1,2]', "line 3: malformed JSON (expected an object"),
        (b'{"body":{"model":"summarize","text":"t"}}', "line 3: custom_id must be a non-empty string"),
    ],
)
def test_400_rejects_the_whole_submission_and_queues_nothing(make_emulator, bad_line, message):
    server = make_emulator()
    good = SPEC_EXAMPLE.splitlines()
    response = submit(server, b"\n".join([good[0], good[1], bad_line, good[2]]))
    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)
    assert server.stats()["batches"] == 0 and server.stats()["items"] == 0


def test_400_for_an_empty_body(make_emulator):
    server = make_emulator()
    assert submit(server, b"\n\n").status_code == 400


def test_a_single_json_object_is_a_one_item_batch_whatever_the_content_type(make_emulator):
    server = make_emulator()
    one = json.dumps({"custom_id": "solo", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "summarize", "text": "One sentence here."}}, indent=None)
    response = submit(server, one.encode(), **{"content-type": "application/json"})
    assert response.status_code == 200 and response.json()["total_count"] == 1


def test_404_for_unknown_batch_ids(make_emulator):
    server = make_emulator()
    for path in ("/v1/batches/batch-nope", "/v1/batches/batch-nope/output"):
        response = requests.get(server.url + path, headers=_headers(server))
        assert response.status_code == 404 and "not found" in response.json()["detail"]


def test_503_when_the_router_is_off(make_emulator):
    server = make_emulator(router=False)
    assert submit(server, SPEC_EXAMPLE).status_code == 503
    response = requests.get(server.url + "/v1/batches/x", headers=_headers(server))
    assert response.status_code == 503 and response.json()["detail"] == "batch router is not configured"


def test_item_failures_are_output_lines_and_the_batch_still_completes(make_emulator):
    server = make_emulator(item_failure_rate=0.3)
    lines = [SPEC_EXAMPLE.splitlines()[0],
             b'{"custom_id":"no-text","body":{"model":"summarize"}}',
             b'{"custom_id":"bad-labels","body":{"model":"classify","text":"t","labels":[]}}']
    lines += [b'{"custom_id":"r%d","body":{"model":"summarize","text":"Fine text number %d."}}' % (i, i)
              for i in range(40)]
    created = submit(server, b"\n".join(lines)).json()
    status = wait_done(server, created["batch_id"])
    results = {line.custom_id: line for line in output(server, status.batch_id)}
    assert status.raw_status == "completed" and status.total == 43 == len(results)
    assert results["no-text"].error.code == "invalid_request" and results["bad-labels"].error.code == "invalid_request"
    injected = [line for line in results.values() if line.error and line.error.code == "model_error"]
    assert 3 <= len(injected) <= 25  # about 30 % of 43, deterministic per custom_id
    assert status.failed == 2 + len(injected) and status.completed == 43 - status.failed


def test_batches_move_through_queued_processing_completed_at_the_set_rate(make_emulator):
    server = make_emulator(items_per_second=40, start_delay=0.3)
    body = b"\n".join(b'{"custom_id":"%d","body":{"model":"summarize","text":"Some text."}}' % i for i in range(40))
    batch_id = submit(server, body).json()["batch_id"]
    seen = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = requests.get(f"{server.url}/v1/batches/{batch_id}", headers=_headers(server)).json()
        seen.append((status["status"], status["completed_count"]))
        if status["status"] == "completed":
            break
        time.sleep(0.05)
    states = [state for state, _ in seen]
    assert states[0] == "queued" and "processing" in states and states[-1] == "completed"
    progress = [count for state, count in seen if state == "processing"]
    assert progress == sorted(progress) and 0 < progress[0] < 40


def test_batch_level_failure(make_emulator):
    server = make_emulator(batch_failure_rate=1.0)
    batch_id = submit(server, SPEC_EXAMPLE).json()["batch_id"]
    assert wait_done(server, batch_id).raw_status == "failed"
    response = requests.get(f"{server.url}/v1/batches/{batch_id}/output", headers=_headers(server))
    assert response.status_code == 404 and "failed" in response.json()["detail"]


def test_idempotency_key_returns_the_same_batch(make_emulator):
    server = make_emulator()
    first = submit(server, SPEC_EXAMPLE, **{"Idempotency-Key": "job-1:chunk-0"}).json()
    again = submit(server, SPEC_EXAMPLE, **{"Idempotency-Key": "job-1:chunk-0"}).json()
    other = submit(server, SPEC_EXAMPLE, **{"Idempotency-Key": "job-1:chunk-1"}).json()
    assert first["batch_id"] == again["batch_id"] != other["batch_id"]
    assert server.stats()["batches"] == 2


def test_a_server_that_ignores_idempotency_keys_bills_every_submission(emulator_process):
    server = emulator_process("--ignore-idempotency-key")
    headers = {"x-api-key": server.api_key, "content-type": "application/jsonl", "Idempotency-Key": "job-1:0"}
    ids = {requests.post(f"{server.url}/v1/batches", data=SPEC_EXAMPLE, headers=headers, timeout=10).json()["batch_id"]
           for _ in range(2)}
    assert len(ids) == 2 and server.stats()["batches"] == 2


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504"])
def test_fault_injection_status_codes(make_emulator, kind):
    server = make_emulator()
    server.set_faults(rate=1.0, kinds=[kind], retry_after=3, routes=["submit", "status"])
    response = submit(server, SPEC_EXAMPLE)
    assert response.status_code == int(kind)
    if kind == "429":
        assert response.headers["Retry-After"] == "3"
    assert server.stats()["batches"] == 0  # an injected error happens before any work
    assert requests.post(server.url + "/classify", headers=_headers(server),
                         json={"text": "t", "labels": [{"name": "a", "rubric": "b?"}]}).status_code == 200
    stats = server.stats()
    assert stats["faults_injected"] == {f"submit:{kind}": 1} and stats["requests"]["realtime"] == 1


def test_fault_injection_resets_and_slow_answers(make_emulator):
    server = make_emulator()
    server.set_faults(rate=1.0, kinds=["reset"], routes=["submit"])
    with pytest.raises(requests.exceptions.RequestException):
        submit(server, SPEC_EXAMPLE)
    assert server.stats()["batches"] == 0
    server.set_faults(rate=1.0, kinds=["reset_after"], routes=["submit"])
    with pytest.raises(requests.exceptions.RequestException):
        submit(server, SPEC_EXAMPLE)
    assert server.stats()["batches"] == 1  # created, but the client never heard of it
    server.set_faults(rate=1.0, kinds=["slow"], slow_seconds=0.5, routes=["submit"])
    started = time.monotonic()
    assert submit(server, SPEC_EXAMPLE).status_code == 200
    assert time.monotonic() - started >= 0.5
    server.set_faults(rate=0.0)
    assert submit(server, SPEC_EXAMPLE).status_code == 200


def test_realtime_endpoints(make_emulator):
    server = make_emulator()
    text = "Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st."
    extracted = requests.post(server.url + "/extract", headers=_headers(server),
                              json={"text": text, "entities": {"ceo": "Name of the CEO"}}).json()
    assert extracted["entities"][0]["text"] == "Tim Cook" and extracted["structured_result"] is None
    summary = requests.post(server.url + "/summarization/abstractive", headers=_headers(server),
                            json={"text": text, "max_tokens": 50}).json()
    assert set(summary) == {"summary", "input_chars", "output_chars", "latency_ms"}
    classified = requests.post(server.url + "/classify", headers=_headers(server), json={
        "text": "Great!", "labels": [{"name": "good", "rubric": "Is it praise?"},
                                      {"name": "bad", "rubric": "Is it a complaint?"}]}).json()
    assert classified["top_label"] == "good" and len(classified["labels"]) == 2
    assert requests.post(server.url + "/classify", headers=_headers(server),
                         json={"text": "x", "labels": []}).status_code == 422
    assert requests.post(server.url + "/extract", headers=_headers(server), data=b"{oops").status_code == 400


def test_realtime_as_the_published_client_calls_it(make_emulator):
    """Today's shape (spec 3.1): chat completions for summarize and extract, decisions for classify."""
    server = make_emulator()
    text = "Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st."

    def post(path, **body):
        return requests.post(server.url + path, headers=_headers(server), json=body)

    summary = post("/v1/chat/completions", model="summarize", max_tokens=50, messages=[
        {"role": "system", "content": "Use bullet points."}, {"role": "user", "content": text}]).json()
    assert summary["object"] == "chat.completion" and summary["model"] == "summarize"
    content = json.loads(summary["choices"][0]["message"]["content"])
    assert set(content) == {"summary", "input_chars", "output_chars", "latency_ms"}
    assert content["summary"].startswith("•")  # the system message is the instructions
    extracted = post("/v1/chat/completions", model="extract", entities={"ceo": "Name of the CEO"},
                     messages=[{"role": "user", "content": text}]).json()
    entities = json.loads(extracted["choices"][0]["message"]["content"])["entities"]
    assert [e["text"] for e in entities] == ["Tim Cook"]
    decided = post("/v1/scaledown", model="classify-1", state={"text": "Great!"}, questions={
        "tone": {"type": "choice", "criteria": {"good": "Is it praise?", "bad": "Is it a complaint?"}}}).json()
    answer = decided["answers"]["tone"]
    assert answer["choice"] == "good" and set(answer["probabilities"]) == {"good", "bad"}
    assert answer["confidence"] == answer["probabilities"]["good"]
    assert post("/v1/scaledown", model="classify-2", state={"text": "x"}, questions={}).status_code == 422
    assert post("/v1/scaledown", model="classify-1", state={"text": "x"},
                questions={"q": {"type": "choice", "criteria": {}}}).status_code == 422
    assert post("/v1/chat/completions", model="summarize", messages=[]).status_code == 422
    assert post("/v1/chat/completions", model="extract", entities={"a": "b"}, top_n="3",
                messages=[{"role": "user", "content": "x"}]).status_code == 422
    assert post("/v1/chat/completions", model="nope", messages=[{"role": "user", "content": "x"}]).status_code == 422
    assert server.stats()["requests"]["realtime"] == 8


def test_a_100k_line_submission_completes(make_emulator):
    server = make_emulator()
    line = b'{"custom_id":"%d","method":"POST","url":"/v1/chat/completions","body":{"model":"summarize","text":"Item %d is short. It has two sentences."}}\n'
    # streamed: a generator body is sent chunked, here 1 000 lines a chunk
    body = (b"".join(line % (i, i) for i in range(k, k + 1000)) for k in range(0, 100_000, 1000))
    response = submit(server, body)
    assert response.status_code == 200 and response.json()["total_count"] == 100_000
    status = wait_done(server, response.json()["batch_id"], timeout=300)
    assert (status.completed, status.failed) == (100_000, 0)
    with requests.get(f"{server.url}/v1/batches/{status.batch_id}/output", headers=_headers(server),
                      stream=True) as streamed:
        count = sum(1 for raw in streamed.iter_lines() if raw)
    assert count == 100_000


def test_a_restarted_emulator_process_loses_nothing_mid_batch(emulator_process, tmp_path):
    data_dir = str(tmp_path / "data")
    first = emulator_process("--data-dir", data_dir, "--items-per-second", "200")
    body = b"\n".join(b'{"custom_id":"r%d","body":{"model":"summarize","text":"Row %d text."}}' % (i, i)
                      for i in range(600))
    batch_id = submit(first, body).json()["batch_id"]
    deadline = time.monotonic() + 30
    while requests.get(f"{first.url}/v1/batches/{batch_id}", headers=_headers(first)).json()["completed_count"] < 100:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.kill()  # SIGKILL mid-batch: nothing gets to shut down cleanly
    second = emulator_process("--data-dir", data_dir, port=first.port)
    before = requests.get(f"{second.url}/v1/batches/{batch_id}", headers=_headers(second)).json()
    assert before["status"] in ("processing", "completed") and before["completed_count"] >= 100
    status = wait_done(second, batch_id)
    ids = [line.custom_id for line in output(second, batch_id)]
    assert (status.completed, len(ids), len(set(ids))) == (600, 600, 600)
    assert ids == [f"r{i}" for i in range(600)]


def test_two_emulators_cannot_share_a_data_dir(make_emulator, tmp_path):
    make_emulator(data_dir=tmp_path / "shared")
    with pytest.raises(RuntimeError, match="another emulator is using"):
        make_emulator(data_dir=tmp_path / "shared")


def test_the_rate_limit_answers_429_with_retry_after_beyond_its_rate(make_emulator):
    server = make_emulator(rate_limit_per_minute=600)  # 10 a second, a burst of 10
    started = time.monotonic()
    answers = [requests.get(f"{server.url}/v1/batches/b-{i}", headers=_headers(server), timeout=10)
               for i in range(30)]
    elapsed = time.monotonic() - started
    limited = [a for a in answers if a.status_code == 429]
    passed = len(answers) - len(limited)
    assert 10 <= passed <= 10 + elapsed * 10 + 1 and limited  # the burst, then the rate (however slow this ran)
    assert all(a.status_code == 404 for a in answers if a not in limited)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    assert limited[0].json()["detail"] == "rate limit exceeded: 600 requests per minute"
    stats = server.stats()  # control routes are never limited
    assert stats["rate_limited"] == len(limited) and stats["requests"]["status"] == 30
    wrong = requests.get(f"{server.url}/v1/batches/b-0", headers={"x-api-key": "wrong"}, timeout=10)
    assert wrong.status_code == 401  # a wrong key is said as such, not hidden behind a 429
    time.sleep(1.1)
    assert requests.get(f"{server.url}/v1/batches/b-0", headers=_headers(server), timeout=10).status_code == 404


def test_the_rate_limit_can_be_changed_while_running(make_emulator):
    server = make_emulator()
    control = f"{server.url}/_emulator/rate-limit"
    assert requests.put(control, json={"per_minute": 60}, headers=_headers(server), timeout=10).json() == {
        "per_minute": 60}
    codes = [requests.get(f"{server.url}/v1/batches/b", headers=_headers(server), timeout=10).status_code
             for _ in range(3)]
    assert codes == [404, 429, 429]
    assert requests.put(control, json={"per_minute": None}, headers=_headers(server), timeout=10).ok
    assert requests.get(f"{server.url}/v1/batches/b", headers=_headers(server), timeout=10).status_code == 404
    assert requests.put(control, json={"per_minute": -1}, headers=_headers(server), timeout=10).status_code == 422
