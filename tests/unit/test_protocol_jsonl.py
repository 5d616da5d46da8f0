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


# -- a line longer than the cap: dropped as it streams, counted, never held whole ------------------------

from hypothesis import (  # noqa: E402
    given,
    settings,
    strategies as st,  # noqa: E402
)

from airflow_batch_provider.protocol.output import DEFAULT_MAX_OUTPUT_LINE_BYTES, OutputReader  # noqa: E402

CHUNK = 1 << 16  # what the hook reads at a time


def test_a_32_mib_line_without_a_newline_is_dropped_and_counted_with_memory_bounded():
    """A 32 MiB line, then a good one: the splitter never holds more than the cap and one chunk (it
    held the whole line, copied again for every chunk), and the reader hands the long line out as an
    unattributable line, the good line after it as it is."""
    reader = OutputReader("summarize")
    splitter = reader._splitter
    good = b'{"custom_id": "a", "error": {"code": "x", "message": "y"}}\n'
    stream = good + b"x" * (32 << 20) + b"\n" + good.replace(b'"a"', b'"b"')
    lines, most = [], 0
    for start in range(0, len(stream), CHUNK):
        lines += reader.feed(stream[start:start + CHUNK])
        most = max(most, splitter.buffered)
    lines += reader.close()
    assert most <= DEFAULT_MAX_OUTPUT_LINE_BYTES + CHUNK
    # (a dropped line comes after the lines of the chunk that ends it: the load attributes lines by id)
    assert sorted((line.custom_id, line.error.code) for line in lines) == [("", "line_too_long"), ("a", "x"),
                                                                           ("b", "x")]
    dropped = next(line for line in lines if not line.custom_id)
    assert f"{32 << 20} bytes, more than max_output_line_bytes" in dropped.error.message


def test_a_long_line_at_the_end_of_the_stream_is_dropped_too():
    splitter = LineSplitter(max_line_bytes=10)
    assert splitter.feed(b"short\n" + b"y" * 11) == [b"short"]
    assert splitter.buffered == 0  # already over the cap: nothing kept
    assert splitter.close() == [] and [d.size for d in splitter.take_too_long()] == [11]


def test_a_dropped_line_read_again_after_a_restart_is_counted_once():
    reader = OutputReader("summarize", max_line_bytes=100)
    stream = b"z" * 500 + b'\n{"custom_id": "a", "error": {"code": "x"}}\n'
    first = reader.feed(stream[:510])  # the long line ended, then the stream broke
    reader.restart()
    again = reader.feed(stream) + reader.close()
    assert [line.custom_id for line in first] == [""] and [line.custom_id for line in again] == ["a"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.integers(0, 40).map(lambda n: b"\n" * n)), max_size=30),
       st.integers(1, 50), st.integers(1, 30))
def test_the_capped_splitter_splits_as_bytes_split_and_drops_only_long_lines(parts, chunk_size, cap):
    data = b"".join(parts)
    splitter = LineSplitter(max_line_bytes=cap)
    lines, dropped = [], []
    for start in range(0, len(data), chunk_size):
        lines += splitter.feed(data[start:start + chunk_size])
        dropped += splitter.take_too_long()
        assert splitter.buffered <= cap + chunk_size
    lines += splitter.close()
    dropped += splitter.take_too_long()
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # no line after the last newline
    assert lines == [line for line in expected if len(line) <= cap]
    assert [d.size for d in dropped] == [len(line) for line in expected if len(line) > cap]
