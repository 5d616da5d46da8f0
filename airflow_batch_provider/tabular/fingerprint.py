"""The request fingerprint: a stable hash of what is paid for, the text and every request parameter.

Incremental runs compare it with what already landed (``request_fingerprint`` column) to skip rows
that would cost the same request again. The definition is ours and fixed: the parameters (model and
every request field, as sorted JSON) are hashed once with BLAKE2b to 64 bits, which seed XXH3-64
(the ``xxhash`` library, a published and stable algorithm) over each text's UTF-8 bytes: 64 bits as
16 hex characters. It is compared only with the fingerprint stored for the same id, so a false
"unchanged" needs a 2^-64 coincidence. The definition must not change between versions: a changed
fingerprint makes every row look new, and so paid for again (a pinned-value test guards it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec
import numpy as np
import pyarrow as pa
import xxhash

from airflow_batch_provider.protocol import Request


class Fingerprinter:
    """Request fingerprints: a fast hash of each text, seeded by the model and request parameters."""
    def __init__(self, request: Request) -> None:
        params = msgspec.json.encode({"model": request.model, **request.params()}, order="sorted")
        self._seed = int.from_bytes(hashlib.blake2b(params, digest_size=8).digest(), "big")

    def many(self, texts: Sequence[str]) -> pa.Array:
        """Fingerprints of many texts, as an Arrow string array (a str is hashed as its UTF-8 bytes)."""
        hash_, seed = xxhash.xxh3_64_intdigest, self._seed
        hashes = np.array([hash_(text, seed) for text in texts], dtype=np.uint64)
        hexed = np.frombuffer(hashes.astype(">u8").tobytes().hex().encode(), dtype="S16")
        return pa.array(hexed, pa.binary(16)).cast(pa.string())
