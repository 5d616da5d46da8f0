import json

import msgspec

from airflow_batch_provider.protocol import (
    ClassifyResult,
    Entity,
    ExtractResult,
    ItemError,
    SummarizeResult,
    parse_output_line,
)

# The spec's sample output, verbatim.
SAMPLE = b"""{"custom_id":"sum-1","response":{"status_code":200,"body":{"model":"summarize","choices":[{"message":{"content":"{\\"summary\\":\\"\xe2\x80\xa2 AI simulates human cognitive processes in machines.\\\\n\xe2\x80\xa2 Key research areas include learning, reasoning, and perception.\\",\\"input_chars\\":420,\\"output_chars\\":112}"}}]}},"error":null}
{"custom_id":"ext-1","response":{"status_code":200,"body":{"model":"extract","choices":[{"message":{"content":"{\\"entities\\":[{\\"type\\":\\"company\\",\\"value\\":\\"Apple Inc.\\",\\"score\\":0.98},{\\"type\\":\\"revenue\\",\\"value\\":\\"$94.8B\\",\\"score\\":0.97},{\\"type\\":\\"ceo\\",\\"value\\":\\"Tim Cook\\",\\"score\\":0.99}]}"}}]}},"error":null}
{"custom_id":"cls-1","response":{"status_code":200,"body":{"model":"classify","choices":[{"message":{"content":"{\\"top_label\\":\\"Positive\\",\\"scores\\":{\\"Positive\\":0.97,\\"Negative\\":0.03},\\"reasoning\\":\\"The text praises fast shipping and product quality explicitly.\\"}"}}]}},"error":null}
"""


def _line(custom_id, model, content, **extra):
    body = {"model": model, "choices": [{"message": {"content": json.dumps(content)}}]}
    return {"custom_id": custom_id, "response": {"status_code": 200, "body": body}, "error": None, **extra}


def test_the_spec_sample_output_parses_into_typed_results():
    lines = [parse_output_line(msgspec.json.decode(raw)) for raw in SAMPLE.splitlines() if raw.strip()]
    assert [line.custom_id for line in lines] == ["sum-1", "ext-1", "cls-1"]
    assert all(line.ok for line in lines)
    assert lines[0].result == SummarizeResult(
        "• AI simulates human cognitive processes in machines.\n"
        "• Key research areas include learning, reasoning, and perception.", 420, 112)
    assert lines[1].result.entities[2] == Entity(type="ceo", text="Tim Cook", confidence=0.99)
    assert lines[1].result.by_type() == {"company": ["Apple Inc."], "revenue": ["$94.8B"], "ceo": ["Tim Cook"]}
    assert lines[2].result == ClassifyResult(
        "Positive", {"Positive": 0.97, "Negative": 0.03},
        "The text praises fast shipping and product quality explicitly.")


def test_entities_in_the_reference_spelling():
    content = {"entities": [{"type": "person", "text": "Tim Cook", "confidence": 0.9, "start": 4,
                             "end": 12, "context": "CEO Tim Cook said"}]}
    line = parse_output_line(_line("e", "extract", content))
    assert line.result == ExtractResult((Entity("person", "Tim Cook", 0.9, 4, 12, "CEO Tim Cook said"),))


def test_classify_labels_list_and_missing_top_label():
    content = {"scores": {}, "labels": [{"label": "a", "score": 0.2, "rubric": "A?"},
                                        {"label": "b", "score": 0.8, "rubric": "B?"}]}
    result = parse_output_line(_line("c", "classify", content)).result
    assert result.top_label == "b" and result.scores == {"a": 0.2, "b": 0.8}
    assert result.labels[0].rubric == "A?"


def test_item_error_line():
    line = parse_output_line({"custom_id": "x", "response": None,
                              "error": {"code": "invalid_request", "message": "text is required"}})
    assert not line.ok and line.error == ItemError("invalid_request", "text is required")


def test_model_is_taken_from_the_job_when_the_body_does_not_say():
    obj = _line("s", "summarize", {"summary": "short"})
    del obj["response"]["body"]["model"]
    assert parse_output_line(obj, expected_model="summarize").result == SummarizeResult("short")


def test_unreadable_content_becomes_an_item_error_not_an_exception():
    obj = _line("s", "summarize", {})
    obj["response"]["body"]["choices"][0]["message"]["content"] = "{not json"
    line = parse_output_line(obj)
    assert line.error.code == "invalid_content" and "unreadable summarize result" in line.error.message
    assert parse_output_line(_line("e", "extract", {"entities": [{"type": "x"}]})).error.code == "invalid_content"


def test_non_200_item_response_and_empty_line_are_item_errors():
    obj = {"custom_id": "s", "response": {"status_code": 500, "body": {"detail": "boom"}}, "error": None}
    assert parse_output_line(obj).error.code == "http_500"
    assert parse_output_line({"custom_id": "s"}).error.code == "no_response"


def test_a_line_without_custom_id_cannot_be_attributed():
    import pytest

    from airflow_batch_provider.protocol import UnexpectedResponseError
    with pytest.raises(UnexpectedResponseError, match="without a custom_id"):
        parse_output_line({"response": None, "error": {"code": "x"}})
