"""Output lines parsed into per-model result types, read tolerantly.

The docs disagree on field names (entities as ``text/confidence`` or ``value/score``), and the domain
result travels as a JSON *string* inside ``choices[0].message.content``. A line whose result cannot
be read becomes an item error (code ``invalid_content``) rather than an exception: one odd item must
not stop a million others from landing.

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

from airflow_batch_provider.protocol.errors import UnexpectedResponseError


class ItemError(msgspec.Struct, frozen=True, gc=False):
    code: str
    message: str


class Entity(msgspec.Struct, frozen=True, gc=False):
    type: str
    text: str
    confidence: float | None = None
    start: int | None = None
    end: int | None = None
    context: str | None = None


class ExtractResult(msgspec.Struct, frozen=True, gc=False):
    entities: tuple[Entity, ...]

    def by_type(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for entity in self.entities:
            grouped.setdefault(entity.type, []).append(entity.text)
        return grouped


class SummarizeResult(msgspec.Struct, frozen=True, gc=False):
    summary: str
    input_chars: int | None = None
    output_chars: int | None = None


class LabelScore(msgspec.Struct, frozen=True, gc=False):
    label: str
    score: float
    rubric: str | None = None


class ClassifyResult(msgspec.Struct, frozen=True, gc=False):
    top_label: str
    scores: dict[str, float]
    reasoning: str | None = None
    labels: tuple[LabelScore, ...] = ()


Result = ExtractResult | SummarizeResult | ClassifyResult


class OutputLine(msgspec.Struct, frozen=True, gc=False):
    custom_id: str
    model: str | None
    result: Result | None
    error: ItemError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _entity(raw: Mapping[str, Any]) -> Entity:
    text = raw.get("text", raw.get("value"))
    confidence = raw.get("confidence", raw.get("score"))
    if not isinstance(raw.get("type"), str) or not isinstance(text, str):
        raise ValueError(f"entity without type or text: {dict(raw)!r:.200}")
    return Entity(
        type=raw["type"],
        text=text,
        confidence=None if confidence is None else float(confidence),
        start=raw.get("start"),
        end=raw.get("end"),
        context=raw.get("context"),
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
    """The domain result of one model; raises ``ValueError``/``KeyError``/``TypeError`` if unreadable."""
    if model == "summarize":
        if not isinstance(content["summary"], str):
            raise TypeError("summary is not a string")
        return SummarizeResult(
            summary=content["summary"],
            input_chars=content.get("input_chars"),
            output_chars=content.get("output_chars"),
        )
    if model == "extract":
        return ExtractResult(entities=tuple(_entity(e) for e in content.get("entities") or ()))
    if model == "classify":
        scores = {str(k): float(v) for k, v in (content.get("scores") or {}).items()}
        labels = tuple(
            LabelScore(label=item["label"], score=float(item["score"]), rubric=item.get("rubric"))
            for item in content.get("labels") or ()
        )
        if not scores and labels:
            scores = {item.label: item.score for item in labels}
        top = content.get("top_label")
        if top is None and scores:
            top = max(scores, key=scores.__getitem__)
        if not isinstance(top, str):
            raise TypeError("top_label is missing")
        return ClassifyResult(top_label=top, scores=scores, reasoning=content.get("reasoning"),
                              labels=labels)
    raise ValueError(f"unknown model {model!r}")


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
            item_error = ItemError(str(error.get("code") or "error"), str(error.get("message") or ""))
        else:
            item_error = ItemError("error", str(error))
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
        content = body["choices"][0]["message"]["content"]
        if isinstance(content, (str, bytes)):
            content = msgspec.json.decode(content)
        if not isinstance(content, Mapping):
            raise TypeError("content is not an object")
        result = parse_result(str(model), content)
    except (KeyError, IndexError, TypeError, ValueError, msgspec.DecodeError) as exc:
        return OutputLine(custom_id, model, None,
                          ItemError("invalid_content", f"unreadable {model} result: {exc}"[:500]))
    return OutputLine(custom_id, model, result, None)


def decode_output_line(raw: bytes, expected_model: str | None = None) -> OutputLine:
    """One raw output line as an :class:`OutputLine`. Malformed JSON raises ``msgspec.DecodeError``;
    a line without ``custom_id`` raises :class:`UnexpectedResponseError` (the caller counts both as
    unattributable)."""
    try:
        line = _typed_line(_LINE.decode(raw), expected_model)
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
