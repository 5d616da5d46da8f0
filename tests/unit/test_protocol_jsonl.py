import pytest

from airflow_batch_provider.protocol import LineDecoder, LineSplitter, MalformedLineError


def decode_all(lines):
    decoder = LineDecoder()
    return [obj for obj in map(decoder.decode, lines) if obj is not None]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_splitting_does_not_depend_on_chunk_boundaries(size):
    data = b'{"a":1}\n\n{"b":"x\\ny"}\r\n{"c":3}'
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    splitter = LineSplitter()
    lines = [line for chunk in chunks for line in splitter.feed(chunk)] + splitter.close()
    assert decode_all(lines) == [{"a": 1}, {"b": "x\ny"}, {"c": 3}]


def test_splitter_buffers_only_the_unfinished_line():
    splitter = LineSplitter()
    assert splitter.feed(b'{"a"') == []
    assert splitter.feed(b':1}\n{"b"') == [b'{"a":1}']
    assert splitter.close() == [b'{"b"']
    assert splitter.close() == []


def test_malformed_line_reports_its_number_counting_blank_lines():
    with pytest.raises(MalformedLineError, match="line 4: malformed JSON") as info:
        decode_all([b'{"a":1}', b"", b"  ", b'{"broken": ', b'{"b":2}'])
    assert info.value.line_number == 4


def test_a_line_that_is_not_an_object_is_malformed():
    with pytest.raises(MalformedLineError, match="line 1: malformed JSON \\(expected an object, got list\\)"):
        decode_all([b"[1, 2]"])
