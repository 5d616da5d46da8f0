"""The output reader after a broken stream: every line handed out once, unattributable ones too."""

import json

from airflow_batch_provider.protocol.output import OutputReader


def test_a_restarted_stream_hands_out_no_line_twice_not_even_unattributable_ones():
    lines = [json.dumps({"custom_id": "", "response": None, "error": {"code": "x"}}).encode(),  # decodes, no id
             b'{"custom_id": ',  # malformed
             json.dumps({"custom_id": "a", "error": {"code": "bad", "message": "m"}}).encode()]
    stream = b"\n".join(lines) + b"\n"
    reader = OutputReader("summarize")
    first = reader.feed(stream)
    reader.restart()
    again = reader.feed(stream) + reader.close()
    assert [line.custom_id for line in first] == ["", "", "a"] and again == []
