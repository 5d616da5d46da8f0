"""Output lines parsed into per-model result types, read tolerantly.

The docs disagree on field names (entities as ``text/confidence`` or ``value/score``), and the domain
result travels as a JSON *string* inside ``choices[0].message.content``. A line whose result cannot
be read becomes an item error (code ``invalid_content``) rather than an exception: one odd item must
not stop a million others from landing. So does a value no destination could store, the same on every
destination: a score that is not a finite number (``"NaN"``, ``"inf"``, ``1e400``; MariaDB refuses NaN
and so failed the whole load, the others stored it), a count beyond 64 bits, a value of the wrong type.
A NUL or a lone surrogate in a result's text becomes U+FFFD, the replacement mark, here rather than in
one destination's writer (PostgreSQL cannot store NUL; the others kept it): the text was paid for and is
otherwise fine, and every destination then lands the same string.

:func:`decode_output_line` reads a raw line. Most lines have the documented shape, and msgspec decodes
those straight into typed structs (several times cheaper than building dicts and walking them); a
line of any other shape is read by :func:`parse_output_line`, so the typed branch changes speed,
never results.

The result types are frozen msgspec Structs: immutable like frozen dataclasses, but much cheaper to
build. They hold only strings, numbers and other such Structs, so they can take part in no reference
cycle, and ``gc=False`` keeps the garbage collector from walking the millions of them a load makes
(a third of the parse time before).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, overload

import msgspec

from airflow_batch_provider.protocol import values
from airflow_batch_provider.protocol.errors import UnexpectedResponseError
from airflow_batch_provider.protocol.values import (  # importable here as before
    INT64_MAX as INT64_MAX,
    INT64_MIN as INT64_MIN,
    storable as storable,
)


class ItemError(msgspec.Struct, frozen=True, gc=False):
    """An item the API could not answer: its error code and message."""
    code: str
    message: str


class Entity(msgspec.Struct, frozen=True, gc=False):
    """One entity an extract found: its type, its text, and where and how sure, when the API says."""
    type: str
    text: str
    confidence: float | None = None
    start: int | None = None
    end: int | None = None
    context: str | None = None


class ExtractResult(msgspec.Struct, frozen=True, gc=False):
    """An extract's entities."""
    entities: tuple[Entity, ...]

    def by_type(self) -> dict[str, list[str]]:
        """The entities' texts grouped by type, in the order found."""
        grouped: dict[str, list[str]] = {}
        for entity in self.entities:
            grouped.setdefault(entity.type, []).append(entity.text)
        return grouped


class SummarizeResult(msgspec.Struct, frozen=True, gc=False):
    """A summary, with the lengths of the input and the summary when the API gives them."""
    summary: str
    input_chars: int | None = None
    output_chars: int | None = None


class LabelScore(msgspec.Struct, frozen=True, gc=False):
    """One label's score, with its rubric when the API echoes it."""
    label: str
    score: float
    rubric: str | None = None


class ClassifyResult(msgspec.Struct, frozen=True, gc=False):
    """A classification: the top label, every label's score, and the reasoning when given."""
    top_label: str
    scores: dict[str, float]
    reasoning: str | None = None
    labels: tuple[LabelScore, ...] = ()


Result = ExtractResult | SummarizeResult | ClassifyResult


class OutputLine(msgspec.Struct, frozen=True, gc=False):
    """One line of a batch's output: the row it answers (``custom_id``) and its result or error."""
    custom_id: str
    model: str | None
    result: Result | None
    error: ItemError | None

    @property
    def ok(self) -> bool:
        """True when the item was answered with a result."""
        return self.error is None


def _entity(raw: Any) -> Entity:
    if not isinstance(raw, Mapping):
        raise TypeError(f"an entity is {type(raw).__name__}, not an object")
    text = raw.get("text", raw.get("value"))
    confidence = raw.get("confidence", raw.get("score"))
    if not isinstance(raw.get("type"), str) or not isinstance(text, str):
        raise ValueError(f"entity without type or text: {dict(raw)!r:.200}")
    return Entity(
        type=values.storable(raw["type"]),
        text=values.storable(text),
        confidence=values.optional_score(confidence, "an entity's confidence"),
        start=values.integer(raw.get("start"), "an entity's start", bits64=False),  # kept in JSON: any integer
        end=values.integer(raw.get("end"), "an entity's end", bits64=False),
        context=values.optional_text(raw.get("context"), "an entity's context"),
    )


@overload
def parse_result(model: Literal["extract"], content: Mapping[str, Any]) -> ExtractResult: ...
@overload
def parse_result(model: Literal["summarize"], content: Mapping[str, Any]) -> SummarizeResult: ...
@overload
def parse_result(model: Literal["classify"], content: Mapping[str, Any]) -> ClassifyResult: ...
@overload
def parse_result(model: str, content: Mapping[str, Any]) -> Result: ...
def parse_result(model: str, content: Mapping[str, Any]) -> Result:
    """The domain result of one model; raises ``ValueError``/``KeyError``/``TypeError`` if unreadable, or
    if a value is one no destination could store (see the module's docstring)."""
    if model == "summarize":
        return SummarizeResult(
            summary=values.text(content["summary"], "summary"),
            input_chars=values.integer(content.get("input_chars"), "input_chars"),
            output_chars=values.integer(content.get("output_chars"), "output_chars"),
        )
    if model == "extract":
        entities = content.get("entities") or ()
        if not isinstance(entities, (list, tuple)):
            raise TypeError(f"entities is {type(entities).__name__}, not a list")
        return ExtractResult(entities=tuple(_entity(e) for e in entities))
    if model == "classify":
        raw_scores = content.get("scores") or {}
        raw_labels = content.get("labels") or ()
        if not isinstance(raw_scores, Mapping) or not isinstance(raw_labels, (list, tuple)):
            raise TypeError("scores is not an object, or labels not a list")
        scores = {values.storable(str(k)): values.score(v, f"the score of {k!r:.60}") for k, v in raw_scores.items()}
        labels = tuple(
            LabelScore(label=values.text(item["label"], "a label's name"),
                       score=values.score(item["score"], f"the score of label {item['label']!r:.60}"),
                       rubric=values.optional_text(item.get("rubric"), "a label's rubric"))
            for item in raw_labels
        )
        if not scores and labels:
            scores = {item.label: item.score for item in labels}
        top = content.get("top_label")
        if top is None and scores:
            top = max(scores, key=scores.__getitem__)
        if not isinstance(top, str):
            raise TypeError("top_label is missing")
        return ClassifyResult(top_label=values.storable(top), scores=scores,
                              reasoning=values.optional_text(content.get("reasoning"), "reasoning"), labels=labels)
    raise ValueError(f"unknown model {model!r}")


def completion_body(model: str | None, content: Any, completion_id: str) -> dict[str, Any]:
    """A ChatCompletion carrying ``content`` as a JSON string, as the API answers (a server's side)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": msgspec.json.encode(content).decode()},
            "finish_reason": "stop",
        }],
    }


def completion_content(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The domain result a ChatCompletion carries in ``choices[0].message.content``: a JSON string (as
    batch output lines have it) or an object; raises ``KeyError``/``IndexError``/``TypeError``/
    ``msgspec.DecodeError`` for any other shape."""
    content = body["choices"][0]["message"]["content"]
    if isinstance(content, (str, bytes)):
        content = msgspec.json.decode(content)
    if not isinstance(content, Mapping):
        raise TypeError("content is not an object")
    return content


def parse_output_line(obj: Mapping[str, Any], expected_model: str | None = None) -> OutputLine:
    """Read one decoded output line.

    ``expected_model`` is used when the body does not name its model (the request is known from the
    job). A line without a ``custom_id`` raises :class:`UnexpectedResponseError`: it cannot be
    matched to any row, so the caller counts it as unattributable.
    """
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str):
        raise UnexpectedResponseError(f"output line without a custom_id: {dict(obj)!r:.200}")
    error = obj.get("error")
    response = obj.get("response")
    if error:
        if isinstance(error, Mapping):
            item_error = ItemError(values.storable(str(error.get("code") or "error")),
                                   values.storable(str(error.get("message") or "")))
        else:
            item_error = ItemError("error", values.storable(str(error)))
        return OutputLine(custom_id, expected_model, None, item_error)
    if not isinstance(response, Mapping):
        return OutputLine(custom_id, expected_model, None,
                          ItemError("no_response", "the line has neither a response nor an error"))
    body = response.get("body")
    if not isinstance(body, Mapping):
        body = {}
    model: str | None = body.get("model") or expected_model
    status_code = response.get("status_code", 200)
    if status_code != 200:
        return OutputLine(custom_id, model, None,
                          ItemError(f"http_{status_code}", str(body)[:500]))
    try:
        result = parse_result(str(model), completion_content(body))
    except (KeyError, IndexError, TypeError, ValueError, msgspec.DecodeError) as exc:
        return OutputLine(custom_id, model, None,
                          ItemError("invalid_content", values.storable(f"unreadable {model} result: {exc}"[:500])))
    return OutputLine(custom_id, model, result, None)


def decode_output_line(raw: bytes, expected_model: str | None = None) -> OutputLine:
    """One raw output line as an :class:`OutputLine`. Malformed JSON raises ``msgspec.DecodeError``;
    a line without ``custom_id`` raises :class:`UnexpectedResponseError` (the caller counts both as
    unattributable)."""
    try:
        # A NUL (escaped as \u0000: JSON has no other way) goes the tolerant way, which replaces it.
        line = None if b"u0000" in raw else _typed_line(_LINE.decode(raw), expected_model)
    except msgspec.ValidationError:
        line = None  # valid JSON of another shape (malformed JSON raises DecodeError to the caller)
    return line if line is not None else parse_output_line(_ANY.decode(raw), expected_model)


# -- the typed branch: the documented shape, decoded straight into structs ----------------------------
class _Message(msgspec.Struct, gc=False):
    content: str


class _Choice(msgspec.Struct, gc=False):
    message: _Message


class _Body(msgspec.Struct, gc=False):
    choices: list[_Choice]
    model: str | None = None


class _Response(msgspec.Struct, gc=False):
    body: _Body
    status_code: int = 200


class _Line(msgspec.Struct, gc=False):
    custom_id: str
    response: _Response | None = None
    error: Any = None


class _Entity(msgspec.Struct, gc=False):
    # UNSET tells an absent key from a null one, as the tolerant reading does (raw.get(k, fallback)).
    type: str
    text: str | None | msgspec.UnsetType = msgspec.UNSET
    value: str | None | msgspec.UnsetType = msgspec.UNSET
    confidence: float | None | msgspec.UnsetType = msgspec.UNSET
    score: float | None | msgspec.UnsetType = msgspec.UNSET
    start: int | None = None
    end: int | None = None
    context: str | None = None


class _Extraction(msgspec.Struct, gc=False):
    entities: list[_Entity] = []


_LINE = msgspec.json.Decoder(_Line)
_CONTENT: dict[str, msgspec.json.Decoder[Any]] = {
    "summarize": msgspec.json.Decoder(SummarizeResult), "classify": msgspec.json.Decoder(ClassifyResult),
    "extract": msgspec.json.Decoder(_Extraction)}
_ANY = msgspec.json.Decoder()


def _typed_line(line: _Line, expected_model: str | None) -> OutputLine | None:
    """The line when it has the documented shape with a result; None sends it the tolerant way."""
    response = line.response
    if line.error is not None or response is None or response.status_code != 200 or not response.body.choices:
        return None
    model = response.body.model or expected_model
    decoder = _CONTENT.get(model)  # type: ignore[arg-type]
    if decoder is None:
        return None
    try:
        content = decoder.decode(response.body.choices[0].message.content)
    except msgspec.DecodeError:
        return None
    if model == "extract":
        content = _extract_result(content)
    elif model == "classify" and not content.scores and content.labels:
        return None  # the tolerant reading takes the scores from the labels
    elif model == "summarize" and not all(c is None or values.INT64_MIN <= c <= values.INT64_MAX
                                          for c in (content.input_chars, content.output_chars)):
        return None  # msgspec takes up to 2**64 - 1; the tolerant reading refuses what int64 cannot hold
    return None if content is None else OutputLine(line.custom_id, model, content, None)


def _extract_result(extraction: _Extraction) -> ExtractResult | None:
    entities = []
    for e in extraction.entities:
        text = e.value if e.text is msgspec.UNSET else e.text
        if not isinstance(text, str):
            return None  # the tolerant reading words the error
        confidence = e.score if e.confidence is msgspec.UNSET else e.confidence
        entities.append(Entity(e.type, text, None if confidence is msgspec.UNSET else confidence,
                               e.start, e.end, e.context))
    return ExtractResult(tuple(entities))
