"""A job's downloaded outputs on local disk, until the whole job has been read and landed.

A load reads every batch's output into the spool first and lands from it afterwards, so:

- memory holds a few batches whatever waits for a retry (a batch that failed goes back in the queue
  while the others are read);
- the destination's transaction opens only once every batch is read: an outage mid-read leaves the
  table untouched;
- a retry of the load on the same worker reads only what is missing.

One file per batch, named by a digest of its id (an id is the server's text: it never becomes a
path), written whole to a temporary name and renamed into place. It holds the batch id and its line
count beside the lines: a file that does not decode, or whose id or count differ, is read again.
Lines are msgpack (msgspec), each with its result's model, as the results are structs of three types.

The spool of a job lives in ``[scaledown] spool_dir`` (default: ``scaledown-spool-<uid>`` in the
machine's temporary directory), in a folder only this user may enter — one made by another user, or
a link, is refused, as its files could be forged results — and is removed once the job has landed.
Loads of the same job at once share it: each holds a shared lock, and the last one out removes it.
Spools left by jobs that never landed are removed after a week, unless a load holds them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
from airflow.sdk import conf

from airflow_batch_provider.job.errors import UnsafeSpoolError
from airflow_batch_provider.protocol.results import (
    ClassifyResult,
    ExtractResult,
    ItemError,
    OutputLine,
    Result,
    SummarizeResult,
)

STALE_AFTER = 7 * 24 * 3600.0  # seconds: a spool untouched this long belongs to a job nobody will load
_JOB_FOLDER = re.compile(r"[0-9a-f]{32}")  # the only folders of the spool root this module removes
_KINDS: dict[str, type[Result]] = {"extract": ExtractResult, "summarize": SummarizeResult,
                                   "classify": ClassifyResult}
_KIND_OF = {kind: name for name, kind in _KINDS.items()}


class _Line(msgspec.Struct, array_like=True, gc=False):
    custom_id: str
    model: str | None
    kind: str | None  # the result's type (a key of _KINDS), or None for no result
    result: msgspec.Raw  # decoded once the kind is known
    error: ItemError | None


class _File(msgspec.Struct, array_like=True, gc=False):
    batch_id: str
    count: int
    lines: list[_Line]


_ENCODER = msgspec.msgpack.Encoder()
_NO_RESULT = msgspec.Raw(_ENCODER.encode(None))
_DECODER = msgspec.msgpack.Decoder(_File)
_RESULT_DECODERS = {name: msgspec.msgpack.Decoder(kind) for name, kind in _KINDS.items()}




def _in_temp() -> Path:
    return Path(tempfile.gettempdir()) / f"scaledown-spool-{os.getuid()}"


def default_spool_dir() -> Path:
    """``[scaledown] spool_dir``; else ``scaledown-spool-<uid>`` in the machine's temporary directory."""
    configured = conf.get("scaledown", "spool_dir", fallback="")
    return Path(configured) if configured else _in_temp()


def _open_folder(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:  # ELOOP, ENOTDIR: a link or a file where the folder should be
        raise UnsafeSpoolError(f"the spool folder {path} is a link or not a folder ({exc.strerror}); remove it, or "
                               "set [scaledown] spool_dir to a folder of this user's") from None


def _check_private(fd: int, path: Path) -> None:
    """The open folder ``fd`` (opened without following a link) is this user's, and only theirs."""
    info = os.fstat(fd)
    if info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH | stat.S_IRWXO):
        raise UnsafeSpoolError(f"the spool folder {path} belongs to another user or others may write or enter it; "
                               "remove it, or set [scaledown] spool_dir to a folder of this user's")


class OutputSpool:
    """``with OutputSpool(job_id) as spool:`` — :meth:`write` and :meth:`read` a batch's lines;
    :meth:`discard` once the job has landed."""

    def __init__(self, job_id: str, root: Path | None = None) -> None:
        self.root = root or default_spool_dir()
        self.path = self.root / hashlib.sha256(job_id.encode()).hexdigest()[:32]
        self._lock: int | None = None

    def __enter__(self) -> OutputSpool:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root == _in_temp():  # in a folder every user may write to: it must be ours
            root = _open_folder(self.root)
            try:
                _check_private(root, self.root)
            finally:
                os.close(root)
        self._remove_stale()
        while True:
            self.path.mkdir(mode=0o700, exist_ok=True)  # the outputs are the user's data
            self._lock = _open_folder(self.path)
            try:
                _check_private(self._lock, self.path)
            except UnsafeSpoolError:
                os.close(self._lock)
                self._lock = None
                raise
            fcntl.flock(self._lock, fcntl.LOCK_SH)  # a load of the same job that ends now leaves it be
            if self._still_there():
                break
            os.close(self._lock)  # the load that held it removed it meanwhile: make it anew
        os.utime(self.path)
        return self

    def _still_there(self) -> bool:
        assert self._lock is not None
        try:
            return os.path.samestat(os.fstat(self._lock), os.stat(self.path))
        except FileNotFoundError:
            return False

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    def _file(self, batch_id: str) -> Path:
        return self.path / hashlib.sha256(batch_id.encode()).hexdigest()[:40]

    def has(self, batch_id: str) -> bool:
        """The batch's lines are here, whole (a file cut short by a crash is removed: read it again)."""
        return self.read(batch_id) is not None

    def write(self, batch_id: str, lines: Sequence[OutputLine]) -> None:
        """Keep one batch's output lines, written whole or not at all, with its id and line count."""
        encoded = _ENCODER.encode(_File(batch_id, len(lines), [
            _Line(line.custom_id, line.model, _KIND_OF[type(line.result)] if line.result is not None else None,
                  msgspec.Raw(_ENCODER.encode(line.result)) if line.result is not None else _NO_RESULT, line.error)
            for line in lines]))
        target = self._file(batch_id)
        with tempfile.NamedTemporaryFile(dir=self.path, prefix=".part-", delete=False) as part:
            try:
                part.write(encoded)
            except BaseException:  # a full disk: no half file left behind
                os.unlink(part.name)
                raise
        os.replace(part.name, target)  # whole or not at all: a try killed mid-write leaves a .part-

    def read(self, batch_id: str) -> list[OutputLine] | None:
        """The batch's lines, or None when the spool does not hold them whole (the file is then removed)."""
        target = self._file(batch_id)
        try:
            stored = _DECODER.decode(target.read_bytes())
            if stored.batch_id != batch_id or stored.count != len(stored.lines):
                raise ValueError("another batch's file, or cut short")
            return [OutputLine(line.custom_id, line.model,
                               _RESULT_DECODERS[line.kind].decode(line.result) if line.kind is not None else None,
                               line.error)
                    for line in stored.lines]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, msgspec.DecodeError):
            target.unlink(missing_ok=True)
            return None

    def discard(self) -> bool:
        """Remove the spool, unless another load of the job is using it (it removes it when done)."""
        if self._lock is None:
            return False
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    def _remove_stale(self) -> None:
        """Remove other jobs' spools untouched for :data:`STALE_AFTER`, unless a load holds them."""
        cutoff = time.time() - STALE_AFTER
        for old in self.root.iterdir():
            if old == self.path or not _JOB_FOLDER.fullmatch(old.name):
                continue
            try:
                if not stat.S_ISDIR(old.lstat().st_mode) or old.lstat().st_mtime >= cutoff:
                    continue
                held = os.open(old, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(old, ignore_errors=True)
            except BlockingIOError:
                pass  # a load is using it
            finally:
                os.close(held)
