from airflow_batch_provider.protocol import Classify, Label, Summarize
from airflow_batch_provider.tabular.fingerprint import Fingerprinter, request_fingerprint

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
    assert request_fingerprint("Great kettle!", Summarize()) == "55344a895d88e255"
    assert Fingerprinter(Summarize()).many(["a", "b", "a"])[0] == Fingerprinter(Summarize()).many(["a"])[0]
    assert len(request_fingerprint("ünïcode — text", Summarize())) == 16
