"""protocol/realtime.py: what the hook sends in each shape, and that the emulator reads it back as the
body a batch line would carry, so the two sides cannot drift apart."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from airflow_batch_provider.protocol import Classify, Extract, Label, Summarize, UnexpectedResponseError
from airflow_batch_provider.protocol.realtime import (
    bodies_from_decision,
    body_from_chat,
    decision_answer,
    realtime_call,
    realtime_result,
)

LABELS = [Label("good", "Is it praise?"), Label("bad", "Is it a complaint?")]


def test_todays_shape_puts_instructions_in_a_system_message():
    call = realtime_call(Summarize("Use bullet points.", 64), "Some text.")
    assert call.path == "/v1/chat/completions"
    assert call.payload == {"model": "summarize", "max_tokens": 64, "messages": [
        {"role": "system", "content": "Use bullet points."}, {"role": "user", "content": "Some text."}]}
    call = realtime_call(Extract({"ceo": "Name of the CEO"}), "Some text.", {"top_n": 3, "threshold": None})
    assert call.payload == {"model": "extract", "entities": {"ceo": "Name of the CEO"}, "top_n": 3,
                            "messages": [{"role": "user", "content": "Some text."}]}


def test_classify_asks_the_decisions_endpoint_one_choice_question():
    call = realtime_call(Classify(LABELS, "Reviews."), "Great!")
    assert call.path == "/v1/scaledown"
    assert call.payload == {"model": "classify-1", "state": {"text": "Great!"},  # no place for the prompt
                            "questions": {"label": {"type": "choice", "criteria": {
                                "good": "Is it praise?", "bad": "Is it a complaint?"}}}}
    result = realtime_result(Classify(LABELS), {"answers": {"label": {
        "choice": "good", "probabilities": {"good": 0.8, "bad": 0.2}, "confidence": 0.8}}})
    assert result.top_label == "good" and result.scores == {"good": 0.8, "bad": 0.2}
    assert [(s.label, s.score, s.rubric) for s in result.labels] == [("good", 0.8, "Is it praise?"),
                                                                     ("bad", 0.2, "Is it a complaint?")]


def test_the_legacy_shape_is_one_path_per_model_with_text_beside_the_fields():
    assert realtime_call(Summarize("Short."), "T", legacy=True).payload == {"text": "T", "instructions": "Short."}
    assert realtime_call(Summarize(), "T", legacy=True).path == "/summarization/abstractive"
    assert realtime_call(Extract({"a": "b"}), "T", legacy=True).path == "/extract"
    call = realtime_call(Classify(LABELS, "Reviews."), "T", legacy=True)
    assert call.path == "/classify" and call.payload["system_prompt"] == "Reviews."
    assert realtime_result(Summarize(), {"summary": "S", "input_chars": 1}, legacy=True).summary == "S"


@pytest.mark.parametrize("answer", [
    {}, {"choices": []}, {"choices": [{"message": {"content": "{oops"}}]}, {"choices": [{"message": {"content": "[1]"}}]},
    {"answers": {}}, {"answers": {"label": {"choice": "good", "probabilities": {"good": 1.0}}}},
    {"answers": {"label": {"choice": "ugly", "probabilities": {"good": 0.5, "bad": 0.5}}}},
    {"answers": {"label": {"choice": "good", "probabilities": {"good": 0.5, "bad": 0.3, "ugly": 0.2}}}}])
def test_an_answer_of_another_shape_is_the_packages_error(answer):
    for request in (Summarize(), Classify(LABELS)):
        with pytest.raises(UnexpectedResponseError):
            realtime_result(request, answer)


@given(text=st.text(min_size=1), instructions=st.one_of(st.none(), st.text(min_size=1).filter(str.strip)))
def test_what_the_hook_sends_the_emulator_reads_as_the_batch_body(text, instructions):
    summarize = Summarize(instructions)
    expected = {"model": "summarize", "text": text, **summarize.params()}
    assert body_from_chat(realtime_call(summarize, text).payload) == expected
    extract = Extract({"ceo": "Name of the CEO"}, instructions)
    assert body_from_chat(realtime_call(extract, text).payload) == {"model": "extract", "text": text,
                                                                     **extract.params()}
    classify = Classify(LABELS, instructions)
    (body,) = bodies_from_decision(realtime_call(classify, text).payload).values()
    assert body == {"model": "classify", "text": text, "labels": classify.params()["labels"]}
    answer = decision_answer({"top_label": "bad", "scores": {"good": 0.3, "bad": 0.7}})
    assert realtime_result(classify, {"answers": {"label": answer}}).top_label == "bad"
