import hashlib

import msgspec
import xxhash
from hypothesis import given, strategies as st

from airflow_batch_provider.protocol import Classify, Label, Summarize
from airflow_batch_provider.tabular.fingerprint import Fingerprinter


def request_fingerprint(text, request):
    return Fingerprinter(request).many([text])[0].as_py()

POS = Label("Positive", "Is it praise?")
NEG = Label("Negative", "Is it a complaint?")


def test_fingerprint_changes_with_text_and_every_parameter():
    base = request_fingerprint("text", Summarize(instructions="short"))
    assert base == request_fingerprint("text", Summarize(instructions="short"))
    assert base != request_fingerprint("text ", Summarize(instructions="short"))
    assert base != request_fingerprint("text", Summarize(instructions="short", max_tokens=5))
    assert base != request_fingerprint("text", Summarize(instructions="long"))
    assert request_fingerprint("t", Classify([POS, NEG])) != request_fingerprint("t", Classify([NEG, POS]))


def test_fingerprint_is_pinned_so_stored_fingerprints_stay_valid_across_versions():
    assert request_fingerprint("Great kettle!", Summarize()) == "5555dca3451faf2b"
    assert Fingerprinter(Summarize()).many(["a", "b", "a"])[0] == Fingerprinter(Summarize()).many(["a"])[0]
    assert len(request_fingerprint("ünïcode — text", Summarize())) == 16


@given(st.text(), st.integers(min_value=1, max_value=10**6))
def test_the_fingerprint_is_its_written_definition(text, max_tokens):
    """XXH3-64 of the UTF-8 text, seeded by BLAKE2b-64 of the sorted parameters: nothing of a
    library's choosing that could change under us."""
    request = Summarize(instructions="short", max_tokens=max_tokens)
    params = msgspec.json.encode({"model": "summarize", **request.params()}, order="sorted")
    seed = int.from_bytes(hashlib.blake2b(params, digest_size=8).digest(), "big")
    assert request_fingerprint(text, request) == f"{xxhash.xxh3_64_intdigest(text.encode('utf-8', 'surrogatepass'), seed):016x}"
