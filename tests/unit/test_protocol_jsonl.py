import pytest

from airflow_batch_provider.protocol import (
    LineSplitter,
    MalformedLineError,
    decode_jsonl,
    encode_jsonl,
    iter_lines,
)


def test_encode_is_lazy_and_one_line_each():
    produced = encode_jsonl(({"n": i} for i in range(3)))
    assert next(produced) == b'{"n":0}\n'
    assert list(produced) == [b'{"n":1}\n', b'{"n":2}\n']


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_splitting_does_not_depend_on_chunk_boundaries(size):
    data = b'{"a":1}\n\n{"b":"x\\ny"}\r\n{"c":3}'
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    assert list(decode_jsonl(iter_lines(chunks))) == [{"a": 1}, {"b": "x\ny"}, {"c": 3}]


def test_splitter_buffers_only_the_unfinished_line():
    splitter = LineSplitter()
    assert splitter.feed(b'{"a"') == []
    assert splitter.feed(b':1}\n{"b"') == [b'{"a":1}']
    assert splitter.close() == [b'{"b"']
    assert splitter.close() == []


def test_malformed_line_reports_its_number_counting_blank_lines():
    with pytest.raises(MalformedLineError, match="line 4: malformed JSON") as info:
        list(decode_jsonl([b'{"a":1}', b"", b"  ", b'{"broken": ', b'{"b":2}']))
    assert info.value.line_number == 4


def test_a_line_that_is_not_an_object_is_malformed():
    with pytest.raises(MalformedLineError, match="line 1: malformed JSON \\(expected an object, got list\\)"):
        list(decode_jsonl([b"[1, 2]"]))
