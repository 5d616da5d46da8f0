import json

import msgspec

from airflow_batch_provider.protocol import (
    ClassifyResult,
    Entity,
    ExtractResult,
    ItemError,
    SummarizeResult,
    decode_output_line,
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


# -- values no destination can store --------------------------------------------------------------------

import math  # noqa: E402

import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from hypothesis import (  # noqa: E402
    given,
    settings,
    strategies as st,  # noqa: E402
)

from airflow_batch_provider.protocol.output import OutputReader  # noqa: E402
from airflow_batch_provider.tabular.results_to_columns import ResultColumns  # noqa: E402

unicode_ = st.text(st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                             st.just("\x00")), max_size=30)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**80), 2**80),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**400, "NaN", "nan", "inf", "-Infinity", "1e400", "0.5",
                     " 1 ", True, False, None]),
    unicode_, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
LABELS = ["pos", "neg"]
REQUEST = {"labels": [{"name": name, "rubric": "?"} for name in LABELS], "entities": {"person": "p", "place": "l"}}


@st.composite
def contents(draw) -> tuple[str, dict]:
    model = draw(st.sampled_from(["summarize", "classify", "extract"]))
    if model == "summarize":
        content = {"summary": draw(values), "input_chars": draw(values), "output_chars": draw(values)}
    elif model == "classify":
        content = {"top_label": draw(st.one_of(st.sampled_from(LABELS), values)),
                   "scores": draw(st.one_of(st.dictionaries(st.sampled_from(LABELS), values), values)),
                   "reasoning": draw(values)}
        if draw(st.booleans()):
            content["labels"] = [{"label": draw(st.one_of(st.sampled_from(LABELS), values)), "score": draw(values),
                                  "rubric": draw(values)}]
    else:
        entity = {"type": draw(st.one_of(st.sampled_from(["person", "place"]), values)), "text": draw(values),
                  "confidence": draw(values), "start": draw(values), "end": draw(values), "context": draw(values)}
        content = {"entities": draw(st.one_of(st.just([entity]), values))}
    drop = draw(st.sets(st.sampled_from(sorted(content))))
    return model, {k: v for k, v in content.items() if k not in drop}


def _landed(model: str, line) -> pa.RecordBatch:
    """The row as the load builds it, for every destination (Arrow refuses what it cannot hold)."""
    columns = ResultColumns(model=model, request=REQUEST, id_column="id", id_type=pa.string(), label_scores=True,
                            entity_columns="first")
    buffer = columns.buffer()
    buffer.add_lines("b1", ["x"], ["fp"], [line])
    return buffer.to_record_batch()


def _storable(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    return True


@settings(max_examples=1000, deadline=None)
@given(contents())
def test_any_output_value_parses_ok_and_storable_or_as_invalid_content(case):
    """Whatever values a result holds: an ok line whose every landed value is a finite float or a
    string every database stores, or an ``invalid_content`` error, never an exception."""
    model, content = case
    line = parse_output_line({"custom_id": "x", "response": {"status_code": 200, "body": {
        "model": model, "choices": [{"message": {"content": content}}]}}})
    assert line.ok or line.error.code == "invalid_content", line
    batch = _landed(model, line)
    assert all(_storable(value) for row in batch.to_pylist() for value in row.values())
    assert batch.column("status").to_pylist() == ["ok" if line.ok else "error"]


@settings(max_examples=300, deadline=None)
@given(contents())
def test_any_output_value_read_from_the_wire_is_ok_and_storable_or_an_error(case):
    """The same through the reader, as bytes (NaN and Infinity as the literals some servers write)."""
    model, content = case
    try:
        text = json.dumps(content, allow_nan=True)
    except (UnicodeEncodeError, ValueError):
        return
    raw = json.dumps({"custom_id": "x", "response": {"status_code": 200, "body": {
        "model": model, "choices": [{"message": {"content": text}}]}}}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    (line,) = OutputReader(model).feed(raw + b"\n")
    assert line.ok or line.error.code in ("invalid_content", "no_custom_id"), line
    batch = _landed(model, line)
    assert all(_storable(value) for row in batch.to_pylist() for value in row.values())


@pytest.mark.parametrize("score", ["NaN", "nan", "inf", "-Infinity", "1e400", pytest.param(10**400, id="10**400"),
                                   True, [0.5], None])
def test_a_score_that_is_not_a_finite_number_is_invalid_content(score):
    line = parse_output_line(_line("c", "classify", {"top_label": "pos", "scores": {"pos": score}}))
    assert line.error.code == "invalid_content" and "the score of 'pos'" in line.error.message


def test_nul_in_result_text_and_error_messages_becomes_the_replacement_mark():
    raw = msgspec.json.encode(_line("s", "summarize", {"summary": "a\x00b", "input_chars": 3}))
    assert decode_output_line(raw).result == SummarizeResult("a\ufffdb", 3)
    error = parse_output_line({"custom_id": "e", "error": {"code": "x\x00", "message": "m\x00 \ud800"}}).error
    assert error == ItemError("x\ufffd", "m\ufffd \ufffd")


def test_a_count_beyond_64_bits_is_invalid_content_on_both_paths():
    obj = _line("s", "summarize", {"summary": "ok", "input_chars": 2**63})
    assert parse_output_line(obj).error.code == "invalid_content"
    assert decode_output_line(msgspec.json.encode(obj)).error.code == "invalid_content"
