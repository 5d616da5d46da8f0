"""OutputSpool: a job's downloaded outputs on disk, kept whole or not at all."""

from __future__ import annotations

import os
import stat
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from airflow_batch_provider.job.output_spool import STALE_AFTER, OutputSpool, UnsafeSpoolError
from airflow_batch_provider.protocol.results import (
    ClassifyResult,
    Entity,
    ExtractResult,
    ItemError,
    LabelScore,
    OutputLine,
    SummarizeResult,
)

texts = st.text(max_size=40)
results = st.one_of(
    st.none(),
    st.builds(SummarizeResult, texts, st.none() | st.integers(0, 2**40), st.none() | st.integers(0, 2**40)),
    st.builds(ClassifyResult, texts, st.dictionaries(texts, st.floats(0, 1), max_size=3), st.none() | texts,
              st.lists(st.builds(LabelScore, texts, st.floats(0, 1), st.none() | texts), max_size=3).map(tuple)),
    st.builds(ExtractResult, st.lists(st.builds(Entity, texts, texts, st.none() | st.floats(0, 1)),
                                      max_size=3).map(tuple)),
)
lines = st.builds(OutputLine, texts, st.none() | st.sampled_from(["extract", "summarize", "classify"]), results,
                  st.none() | st.builds(ItemError, texts, texts))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_id=st.text(min_size=1, max_size=80), output=st.lists(lines, max_size=20))
def test_what_is_written_is_read_back_as_it_was(tmp_path, batch_id, output):
    with OutputSpool("job-1", tmp_path) as spool:
        assert not spool.has(batch_id) or spool.read(batch_id) is not None
        spool.write(batch_id, output)
        assert spool.has(batch_id)
        assert spool.read(batch_id) == output
        # the batch id (the server's text) never becomes a path
        assert all(name.isalnum() for name in os.listdir(spool.path))


def test_a_file_cut_short_or_of_another_batch_is_read_again(tmp_path):
    line = OutputLine("r1", "summarize", SummarizeResult("short"), None)
    with OutputSpool("job-1", tmp_path) as spool:
        spool.write("b1", [line] * 50)
        spool.write("b2", [line])
        path = spool._file("b1")
        path.write_bytes(path.read_bytes()[:-7])  # a copy that lost its end
        assert spool.read("b1") is None and not spool.has("b1")  # removed: read from the API again
        os.replace(spool._file("b2"), spool._file("b3"))  # b2's lines under b3's name
        assert spool.read("b3") is None
        assert spool.read("never-written") is None


def test_only_this_user_can_read_the_outputs(tmp_path):
    with OutputSpool("job-1", tmp_path) as spool:
        assert stat.S_IMODE(spool.path.stat().st_mode) == 0o700


def test_the_last_load_of_a_job_out_removes_its_spool(tmp_path):
    with OutputSpool("job-1", tmp_path) as first, OutputSpool("job-1", tmp_path) as second:
        first.write("b1", [])
        assert second.has("b1")  # one spool per job
        assert not first.discard()  # the second still reads it
        assert first.path.exists()
    with OutputSpool("job-1", tmp_path) as only:
        assert only.discard() and not only.path.exists()


def test_spools_nobody_touched_for_a_week_are_removed(tmp_path):
    with OutputSpool("old-job", tmp_path) as old:
        old.write("b1", [])
    with OutputSpool("recent-job", tmp_path) as recent:
        recent.write("b1", [])
    with OutputSpool("held-job", tmp_path) as held:
        held.write("b1", [])
    (tmp_path / "not-a-spool").mkdir()  # a folder this module did not make: never touched
    week_ago = time.time() - STALE_AFTER - 60
    for path in (old.path, held.path, tmp_path / "not-a-spool"):
        os.utime(path, (week_ago, week_ago))
    with OutputSpool("held-job", tmp_path), OutputSpool("another-job", tmp_path):  # a load holds held-job's
        pass
    assert not old.path.exists() and recent.path.exists() and held.path.exists()
    assert (tmp_path / "not-a-spool").exists()


@pytest.mark.parametrize("made_by", ["another user", "everyone may write", "a link"])
def test_a_spool_folder_that_is_not_this_users_alone_is_refused(tmp_path, made_by):
    """Its files would be taken for downloaded results: another local user could forge them."""
    spool = OutputSpool("job-1", tmp_path)
    if made_by == "a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        spool.path.symlink_to(tmp_path / "elsewhere")
    else:
        spool.path.mkdir(mode=0o700)
        if made_by == "another user":
            os.chown(spool.path, 12345, 12345)
        else:
            spool.path.chmod(0o777)
    with pytest.raises(UnsafeSpoolError, match="spool folder .*job|spool folder"):
        spool.__enter__()
