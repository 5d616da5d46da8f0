"""The request fingerprint: a stable hash of what is paid for, the text and every request parameter.

Incremental runs compare it with what already landed (``request_fingerprint`` column) to skip rows
that would cost the same request again. Computed for a whole column at once: the parameters are
hashed once (BLAKE2b), and their digest keys a SipHash-2-4 pass over each UTF-8 text
(``pandas.util.hash_array``, vectorised C): 64 bits as 16 hex characters. It is compared only
with the fingerprint stored for the same id, so a false "unchanged" needs a 2^-64 coincidence. The definition
must not change between versions: a changed fingerprint makes every row look new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa

from airflow_batch_provider.protocol import Request


class Fingerprinter:
    def __init__(self, request: Request) -> None:
        params = msgspec.json.encode({"model": request.model, **request.params()}, order="sorted")
        self._key = hashlib.blake2b(params, digest_size=8).hexdigest()  # SipHash key: 16 characters

    def many(self, texts: Sequence[str]) -> pa.Array:
        """Fingerprints of many texts, as an Arrow string array (no Python object per row)."""
        hashes = pd.util.hash_array(np.asarray(texts, dtype=object), hash_key=self._key, categorize=False)
        hexed = np.frombuffer(hashes.astype(">u8").tobytes().hex().encode(), dtype="S16")
        return pa.array(hexed, pa.binary(16)).cast(pa.string())

    def __call__(self, text: str) -> str:
        return self.many([text])[0].as_py()


def request_fingerprint(text: str, request: Request) -> str:
    """One text's fingerprint (use a :class:`Fingerprinter` for many)."""
    return Fingerprinter(request)(text)
