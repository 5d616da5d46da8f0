"""The realtime endpoints' two shapes: one text in, one result out, for the hook and the emulator alike.

Today's shape, the one the published client (langchain-scaledown 0.2, October 2026) calls:

- summarize and extract: ``POST /v1/chat/completions`` with ``model`` and a ``messages`` list (the
  instructions as a system message, the text as the user message); the result is JSON in
  ``choices[0].message.content``;
- classify: the decisions endpoint ``POST /v1/scaledown`` (``model: "classify-1"``, the text in
  ``state.text``, the labels as one choice question whose criteria are their rubrics); the answer is
  ``answers[<question>]`` with ``choice``, ``probabilities`` and ``confidence``.

The older shape, one path per model with ``text`` beside the request's fields, stays for servers that
predate it: the connection's ``legacy_realtime_paths`` picks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_batch_provider.protocol.errors import InvalidRequestError, UnexpectedResponseError
from airflow_batch_provider.protocol.requests import CHAT_COMPLETIONS_URL, Classify, Request
from airflow_batch_provider.protocol.results import Result, completion_content, parse_result

LEGACY_PATHS = {"extract": "/extract", "summarize": "/summarization/abstractive", "classify": "/classify"}
DECISIONS_URL = "/v1/scaledown"
DECISION_MODEL = "classify-1"
REALTIME_PATHS = (CHAT_COMPLETIONS_URL, DECISIONS_URL, *LEGACY_PATHS.values())
QUESTION = "label"  # a Classify asks one choice question
# The field a chat message's system content stands for, per model, in the older shape and in batch bodies.
_SYSTEM_FIELD = {"summarize": "instructions", "extract": "instruction", "classify": "system_prompt"}


@dataclass(frozen=True)
class RealtimeCall:
    """Where one realtime request goes and the JSON it sends."""

    path: str
    payload: dict[str, Any]


def realtime_call(request: Request, text: str, options: Mapping[str, Any] | None = None, *,
                  legacy: bool = False) -> RealtimeCall:
    """The call that asks ``request`` of ``text``; ``options`` are extra fields (e.g. extract's
    ``threshold``, ``top_n``, ``context_chars``), sent as given when not ``None``."""
    extra = {name: value for name, value in (options or {}).items() if value is not None}
    params = request.params()
    if legacy:
        return RealtimeCall(LEGACY_PATHS[request.model], {"text": text, **params, **extra})
    if isinstance(request, Classify):  # the decisions endpoint has no place for a system prompt (the hook warns)
        question = {"type": "choice", "criteria": {label.name: label.rubric for label in request.labels}}
        return RealtimeCall(DECISIONS_URL, {"model": DECISION_MODEL, "state": {"text": text},
                                            "questions": {QUESTION: question}, **extra})
    system = params.pop(_SYSTEM_FIELD[request.model], None)
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": text})
    return RealtimeCall(CHAT_COMPLETIONS_URL, {"model": request.model, "messages": messages, **params, **extra})


def realtime_result(request: Request, answer: Mapping[str, Any], *, legacy: bool = False) -> Result:
    """The typed result of a realtime answer; :class:`UnexpectedResponseError` for any other shape."""
    try:
        if legacy:
            content: Mapping[str, Any] = answer
        elif isinstance(request, Classify):
            content = _classify_content(answer["answers"][QUESTION], request)
        else:
            content = completion_content(answer)
        return parse_result(request.model, content)
    except (KeyError, IndexError, TypeError, ValueError, msgspec.DecodeError) as exc:
        raise UnexpectedResponseError(f"unreadable realtime {request.model} answer: {exc!r:.200}") from None


def _classify_content(decision: Mapping[str, Any], request: Classify) -> dict[str, Any]:
    """A decision as classify's result: ``choice`` the top label, ``probabilities`` the scores; an answer
    naming a label that was not asked, or leaving one out, is not a result of this request."""
    probabilities = decision.get("probabilities")
    names = [label.name for label in request.labels]
    if not isinstance(probabilities, Mapping) or set(probabilities) != set(names):
        raise ValueError(f"probabilities must score exactly the labels asked ({', '.join(names)})")
    if decision.get("choice") not in names:
        raise ValueError(f"choice {decision.get('choice')!r:.60} is not one of the labels asked")
    return {"top_label": decision["choice"], "scores": dict(probabilities),
            "labels": [{"label": label.name, "score": probabilities[label.name], "rubric": label.rubric}
                       for label in request.labels]}


# -- the server's side (the emulator) ----------------------------------------------------------------
def body_from_chat(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A realtime chat payload as the body a batch line carries (``text`` beside the fields)."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise InvalidRequestError("messages must be a list of {role, content} objects")
    said = {message.get("role"): message.get("content") for message in messages}  # the last of each role
    if not isinstance(said.get("user"), str):
        raise InvalidRequestError("messages needs a user message with the text as its content")
    body = {name: value for name, value in payload.items() if name != "messages"}
    body["text"] = said["user"]
    system_field = _SYSTEM_FIELD.get(str(payload.get("model")))
    if system_field is not None and said.get("system") is not None:
        body[system_field] = said["system"]
    return body


def bodies_from_decision(payload: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A decisions payload as one classify body per question, by question name."""
    if payload.get("model") != DECISION_MODEL:
        raise InvalidRequestError(f"model must be {DECISION_MODEL!r}, got {payload.get('model')!r}")
    state, questions = payload.get("state"), payload.get("questions")
    if not isinstance(state, Mapping) or not isinstance(questions, Mapping) or not questions:
        raise InvalidRequestError("state must be an object and questions a non-empty object")
    bodies = {}
    for name, question in questions.items():
        criteria = question.get("criteria") if isinstance(question, Mapping) else None
        if not isinstance(question, Mapping) or question.get("type") != "choice" or not isinstance(criteria, Mapping):
            raise InvalidRequestError(f"question {name!r} must be {{type: 'choice', criteria: {{label: description}}}}")
        bodies[name] = {"model": "classify", "text": state.get("text"),
                        "labels": [{"name": label, "rubric": rubric} for label, rubric in criteria.items()]}
    return bodies


def decision_answer(result: Mapping[str, Any]) -> dict[str, Any]:
    """A classify result as the decisions endpoint answers one question."""
    scores = result["scores"]
    return {"choice": result["top_label"], "probabilities": scores, "confidence": scores[result["top_label"]]}
