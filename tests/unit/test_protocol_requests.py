import json

import pytest

from airflow_batch_provider.protocol import (
    Classify,
    Extract,
    InvalidRequestError,
    Label,
    LineEncoder,
    Summarize,
    request_from_body,
)

POS = Label("Positive", "Does this text express satisfaction, praise, or approval?")
NEG = Label("Negative", "Does this text express dissatisfaction, complaints, or criticism?")


def _line(custom_id, text, request):
    return LineEncoder(request).encode(custom_id, text)


def test_spec_example_lines_round_trip():
    """The three lines of the spec's example body, built from request types."""
    lines = [
        _line("sum-1", "Artificial intelligence is ...", Summarize(instructions="Use bullet points.")),
        _line("ext-1", "Apple Inc. reported Q1 revenue of $94.8B.",
                   Extract({"company": "Name of the company", "revenue": "Revenue figure"})),
        _line("cls-1", "This product is fantastic!", Classify([POS, NEG])),
    ]
    decoded = [json.loads(line) for line in lines]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert decoded[0] == {"custom_id": "sum-1", "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": "summarize", "instructions": "Use bullet points.",
                                   "text": "Artificial intelligence is ..."}}
    assert decoded[1]["body"]["entities"] == {"company": "Name of the company", "revenue": "Revenue figure"}
    assert decoded[2]["body"]["labels"][1] == {"name": "Negative", "rubric": NEG.rubric}
    assert "max_tokens" not in decoded[0]["body"] and "system_prompt" not in decoded[2]["body"]


def test_text_with_newlines_and_unicode_stays_one_line():
    line = _line("a", 'multi\nline "quoted" — ünïcode', Summarize(max_tokens=10))
    assert line.count(b"\n") == 1
    assert json.loads(line)["body"] == {"model": "summarize", "max_tokens": 10,
                                        "text": 'multi\nline "quoted" — ünïcode'}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Extract({}), "entities must be a non-empty mapping"),
        (lambda: Extract([]), "entities must be a non-empty mapping"),
        (lambda: Extract({"company": ""}), "description of entity 'company' must not be empty"),
        (lambda: Extract({"company": 3}), "description of entity 'company' must be a string"),
        (lambda: Extract({"": "x"}), "entity label must not be empty"),
        (lambda: Extract({"a": "b"}, instruction=5), "instruction must be a string"),
        (lambda: Summarize(max_tokens=0), "max_tokens must be > 0"),
        (lambda: Summarize(max_tokens=-3), "max_tokens must be > 0"),
        (lambda: Summarize(max_tokens=2.5), "max_tokens must be a positive integer"),
        (lambda: Summarize(max_tokens=True), "max_tokens must be a positive integer"),
        (lambda: Summarize(instructions=" "), "instructions must not be empty"),
        (lambda: Classify([]), "labels must be a non-empty list"),
        (lambda: Classify("positive"), "labels must be a non-empty list"),
        (lambda: Classify([POS, Label("Positive", "Another?")]), "duplicate label names: Positive"),
        (lambda: Classify([{"name": "a", "rubric": "b"}]), "labels must be Label(name, rubric) objects"),
        (lambda: Classify([POS], system_prompt=["x"]), "system_prompt must be a string"),
        (lambda: Label("Positive", ""), "rubric of label 'Positive' must not be empty"),
        (lambda: Label("Positive", None), "rubric of label 'Positive' must be a string"),
        (lambda: Label(7, "Is it?"), "label name must be a string"),
    ],
)
def test_request_validation_names_the_problem(make, message):
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize(
    ("custom_id", "text", "message"),
    [
        ("row-7", None, "row-7: text must be a string, got NoneType"),
        ("row-7", "", "row-7: text must not be empty"),
        ("row-7", "   \n", "row-7: text must not be empty"),
        ("row-7", 12.5, "row-7: text must be a string, got float"),
        ("", "hello", "'': custom_id must be a non-empty string"),
        (7, "hello", "7: custom_id must be a non-empty string"),
    ],
)
def test_item_validation_names_the_item(custom_id, text, message):
    with pytest.raises(InvalidRequestError) as info:
        _line(custom_id, text, Summarize())
    assert str(info.value) == message


def test_duplicate_custom_id_in_one_submission_is_refused():
    encoder = LineEncoder(Summarize())
    encoder.encode("a", "one")
    with pytest.raises(InvalidRequestError, match="a: duplicate custom_id in one submission"):
        encoder.encode("a", "two")
    assert LineEncoder(Summarize()).encode("a", "again")  # a new submission starts afresh


def test_request_from_body_validates_and_knows_every_model():
    assert request_from_body({"model": "classify", "labels": [{"name": "a", "rubric": "b?"}]}) == \
        Classify([Label("a", "b?")])
    assert request_from_body({"model": "extract", "entities": {"x": "y"}}) == Extract({"x": "y"})
    assert request_from_body({"model": "summarize", "max_tokens": 5}) == Summarize(max_tokens=5)
    with pytest.raises(InvalidRequestError, match="unknown model 'translate'"):
        request_from_body({"model": "translate"})
    with pytest.raises(InvalidRequestError, match="labels must be a list"):
        request_from_body({"model": "classify", "labels": "a"})


def test_a_request_goes_through_airflows_xcom_serialization_and_back(monkeypatch):
    """serialize() (which the Rendered tab shows) and deserialize() round-trip, so a request may travel
    through XCom, once a deployment allows the package's classes to be read back."""
    monkeypatch.setenv("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES", "airflow.* airflow_batch_provider.*")
    from airflow.sdk import serde

    for cache in (getattr(serde, name, None) for name in ("_get_patterns", "_get_regexp_patterns")):
        if hasattr(cache, "cache_clear"):
            cache.cache_clear()
    requests = [Extract({"ceo": "Name of the CEO"}, "Be brief."), Summarize("Bullets.", 64), Summarize(),
                Classify([Label("good", "Is it praise?"), Label("bad", "Is it a complaint?")], "Reviews.")]
    for request in requests:
        assert serde.deserialize(serde.serialize(request)) == request
