"""The typed branch of decode_output_line gives exactly what the tolerant path gives, for every shape."""

import json

import msgspec
import pytest

from airflow_batch_provider.protocol import decode_output_line, parse_output_line
from tests.unit.test_protocol_results import SAMPLE


def _line(model, content, **extra):
    body = {"model": model, "choices": [{"message": {"content": json.dumps(content)}}]}
    return {"custom_id": "x", "response": {"status_code": 200, "body": body}, "error": None, **extra}


CASES = [
    *[json.loads(line) for line in SAMPLE.splitlines()],
    _line("extract", {"entities": [{"type": "p", "text": "Tim", "confidence": 0.9, "start": 0, "end": 3, "context": "Tim"}]}),
    _line("classify", {"scores": {}, "labels": [{"label": "a", "score": 0.2}, {"label": "b", "score": 0.8}]}),
    _line("classify", {"top_label": "b", "scores": {}, "labels": [{"label": "b", "score": 0.8}]}),
    _line("classify", {"top_label": "a", "scores": {"a": 1}, "reasoning": None}),
    _line("extract", {"entities": [{"type": "p", "value": "Tim", "score": 1}]}),
    _line("summarize", {"summary": 5}),
    _line("extract", {"entities": [{"type": "x"}]}),
    {"custom_id": "e", "response": None, "error": {"code": "invalid_request", "message": "no text"}},
    {"custom_id": "s", "response": {"status_code": 500, "body": {"detail": "boom"}}, "error": None},
    {"custom_id": "n"},
    {"custom_id": "c", "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "{bad"}}]}}},
]


@pytest.mark.parametrize("obj", CASES)
def test_typed_branch_matches_the_tolerant_one(obj):
    raw = msgspec.json.encode(obj)
    assert decode_output_line(raw, "summarize") == parse_output_line(obj, "summarize")


def test_malformed_json_raises_decode_error():
    with pytest.raises(msgspec.DecodeError):
        decode_output_line(b'{"custom_id": ')


@pytest.mark.parametrize("entity", [
    {"type": "p", "text": None, "value": "v"},            # present but null: the tolerant reading refuses it
    {"type": "p", "text": "t", "confidence": None, "score": 0.5},  # present but null: no confidence
    {"type": "p", "value": "v", "score": 0.5},
    {"type": "p"},
])
def test_null_and_absent_entity_fields_read_alike_on_both_paths(entity):
    obj = _line("extract", {"entities": [entity]})
    assert decode_output_line(msgspec.json.encode(obj), "extract") == parse_output_line(obj, "extract")
