"""Whatever the ids and texts, the spool accepts a row (and its id comes back as it went in) or refuses
it with the package's own error (InvalidRowsError naming the row, InvalidRequestError naming the
column): never a bare exception, which Airflow would retry for nothing.

These drive the real path of the submit operators up to the first request: a DataFrame through
``_frame_to_batches``, Arrow record batches through ``RowEncoder`` into the ``RequestSpool``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from airflow_batch_provider.hooks.settings import BatchLimits
from airflow_batch_provider.job.errors import InvalidRowsError
from airflow_batch_provider.job.submission import spool_rows
from airflow_batch_provider.protocol import InvalidRequestError, Summarize
from airflow_batch_provider.sources.dataframe import frame_batches as _frame_to_batches
from airflow_batch_provider.tabular.rows_to_requests import INT64_MAX, RowEncoder

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
REFUSALS = (InvalidRowsError, InvalidRequestError)  # the package's own; not ValueError, which Arrow's errors are
LOG = logging.getLogger(__name__)

# Any code point, lone surrogates and NUL included (hypothesis leaves surrogates out by default).
characters = st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.just("\x00"))
texts = st.text(characters, max_size=2000)


def _range(kind: pa.DataType) -> tuple[int, int]:
    bits = kind.bit_width
    return (0, 2**bits - 1) if pa.types.is_unsigned_integer(kind) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


@st.composite
def integer_ids(draw) -> pa.Array:
    kind = draw(st.sampled_from(INT_TYPES))
    low, high = _range(kind)
    extremes = st.sampled_from([low, low + 1, high - 1, high, 0, min(high, INT64_MAX), min(high, INT64_MAX + 1)])
    values = draw(st.lists(st.one_of(extremes, st.integers(low, high), st.none()), min_size=1, max_size=20))
    return pa.array(values, kind)


def _arrow_text(values: list[str | None]) -> pa.Array:
    """Strings as a Parquet file written by a careless program holds them: a lone surrogate as its
    (invalid) UTF-8 bytes, which ``pa.array`` would never build from a str."""
    raw = pa.array([None if v is None else v.encode("utf-8", "surrogatepass") for v in values], pa.binary())
    return pa.Array.from_buffers(pa.string(), len(raw), raw.buffers(), raw.null_count)


def _spool(batches, directory: str):
    return spool_rows(batches, RowEncoder(Summarize(), "id", "body"), Path(directory), limits=BatchLimits(50, 1 << 20),
                      on_invalid_rows="skip", allow_empty=True, log=LOG)


def _spooled_rows(spooled) -> pa.Table:
    with pa.ipc.open_stream(str(spooled.spool.rows_path)) as rows:
        return rows.read_all()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=integer_ids())
def test_integer_ids_of_every_width_are_accepted_or_refused_by_name(tmp_path, ids):
    """In-range ids of every width land as int64; uint64 above int64 is refused naming the row."""
    texts_ = pa.array([f"text {i}" for i in range(len(ids))])
    spooled = _spool([pa.record_batch({"id": ids, "body": texts_})], tempfile.mkdtemp(dir=tmp_path))
    values = ids.to_pylist()
    seen: set[int] = set()
    expected = []
    for value in values:
        if value is not None and value not in seen and value <= INT64_MAX:
            expected.append(value)
        seen.add(value)
    rows = _spooled_rows(spooled)
    assert rows.column("id").type == pa.int64()
    assert rows.column("id").to_pylist() == expected
    assert rows.column("custom_id").to_pylist() == [str(v) for v in expected]
    too_large = [ex for ex in spooled.invalid_examples if "larger than" in ex.reason]
    assert [ex.row_id for ex in too_large] == [v for v in values if v is not None and v > INT64_MAX][:len(too_large)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.text(characters, min_size=1, max_size=2000), min_size=1, max_size=8, unique=True),
       body=st.lists(st.one_of(texts, st.none()), min_size=8, max_size=8))
def test_string_ids_and_texts_with_surrogates_and_nul_are_refused_by_row(tmp_path, ids, body):
    batch = pa.record_batch({"id": _arrow_text(ids), "body": _arrow_text(body[: len(ids)])})
    try:
        spooled = _spool([batch], tempfile.mkdtemp(dir=tmp_path))
    except REFUSALS:
        return
    accepted = _spooled_rows(spooled).column("custom_id").to_pylist()
    for custom_id in accepted:  # an accepted id went in as it is, and is text every database stores
        assert custom_id in ids and "\x00" not in custom_id
        custom_id.encode()
    unstorable = [i for i, (id_, text) in enumerate(zip(ids, body, strict=False))
                  if not _storable(id_) or (text is not None and not _storable(text))]
    assert not {ids[i] for i in unstorable} & set(accepted)
    assert len(accepted) + spooled.invalid == len(ids)


def _storable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


python_values = st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63),
                                                                          -(2**63) - 1]),
                          texts, st.none(), st.booleans(), st.floats(allow_nan=True))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(python_values, min_size=1, max_size=10), body=st.lists(st.one_of(texts, st.none()),
                                                                          min_size=10, max_size=10))
def test_a_dataframe_of_any_python_values_is_accepted_or_refused_by_name(tmp_path, ids, body):
    """pandas object columns as users hand them over: mixed types, ints beyond 64 bits, surrogates."""
    frame = pd.DataFrame({"id": pd.Series(ids, dtype=object), "body": pd.Series(body[: len(ids)], dtype=object)})
    try:
        spooled = _spool(_frame_to_batches(frame, ["id", "body"]), tempfile.mkdtemp(dir=tmp_path))
    except REFUSALS:
        return
    rows = _spooled_rows(spooled)
    for custom_id, id_ in zip(rows.column("custom_id").to_pylist(), rows.column("id").to_pylist(), strict=True):
        assert any(id_ == value and type(value) is type(id_) for value in ids)  # the id round-trips
        assert custom_id == str(id_)


@pytest.mark.parametrize(("values", "words"), [
    ([1, "a"], r"column 'id' of the DataFrame cannot be converted to Arrow .*types int, str.*\.astype\(str\)"),
    ([1, 2**64], r"column 'id' of the DataFrame holds an integer outside the signed 64-bit range.*row 1"),
    ([1, -(2**63) - 1], r"integer outside the signed 64-bit range.*row 1"),
    (["a", "b\udc00"], r"column 'id' of the DataFrame holds a string with a lone surrogate at row 1"),
])
def test_a_dataframe_column_arrow_cannot_hold_is_refused_naming_it(tmp_path, values, words):
    frame = pd.DataFrame({"id": pd.Series(values, dtype=object), "body": ["one", "two"]})
    with pytest.raises(InvalidRequestError, match=words):
        _spool(_frame_to_batches(frame, ["id", "body"]), str(tmp_path))


def test_a_text_with_a_lone_surrogate_in_a_dataframe_is_refused_naming_the_row(tmp_path):
    frame = pd.DataFrame({"id": [7, 8, 9], "body": pd.Series(["fine", "fine", "bad \ud800"], dtype=object)})
    with pytest.raises(InvalidRequestError, match=r"column 'body' .* lone surrogate at row 2 \(index 2\)"):
        _spool(_frame_to_batches(frame, ["id", "body"]), str(tmp_path))


@pytest.mark.parametrize("kind", [pa.uint8(), pa.uint16(), pa.uint32()])
def test_small_unsigned_ids_are_accepted(tmp_path, kind):
    batch = pa.record_batch({"id": pa.array([0, 1, _range(kind)[1]], kind), "body": ["a", "b", "c"]})
    rows = _spooled_rows(_spool([batch], str(tmp_path)))
    assert rows.column("id").to_pylist() == [0, 1, _range(kind)[1]]


def test_strings_that_are_not_utf8_are_refused_naming_the_row(tmp_path):
    """As a Parquet file can hold them: the id and the text as bytes no decoder accepts."""
    batch = pa.record_batch({"id": _arrow_text(["ok", "bad\udc80", "ok too"]),
                             "body": _arrow_text(["fine", "fine", "half a \ud83d pair"])})
    with pytest.raises(InvalidRowsError, match=r"2 of 3 rows.*b'bad\\xed\\xb2\\x80': id is not valid UTF-8.*"
                                               r"'ok too': text is not valid UTF-8"):
        spool_rows([batch], RowEncoder(Summarize(), "id", "body"), tmp_path, limits=BatchLimits(50, 1 << 20), log=LOG)
