"""Pseudonymous user ids: a keyed hash at the service's boundary, so the store never holds raw ids.

HMAC-SHA256 with a secret key read from a file: the same raw id always maps to the same
pseudonym (profiles and recommendations keep working), and without the key the raw ids
cannot be recovered by hashing guesses.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from decayrec.errors import InputError

__all__ = ["Pseudonymiser"]

_MIN_KEY_BYTES = 16


class Pseudonymiser:
    def __init__(self, key: bytes):
        if len(key) < _MIN_KEY_BYTES:
            raise InputError(
                f"the pseudonymisation key has {len(key)} bytes, fewer than {_MIN_KEY_BYTES}",
                "make one with: head -c 32 /dev/urandom > KEYFILE",
            )
        self._key = key
        self._cache: dict[str, str] = {}

    @classmethod
    def from_file(cls, path: Path) -> Pseudonymiser:
        try:
            key = path.read_bytes().strip()
        except FileNotFoundError:
            raise InputError(
                f"--pseudonymise-key-file {path} does not exist", "make one with: head -c 32 /dev/urandom > KEYFILE"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read --pseudonymise-key-file {path} ({exc.strerror})", "check its permissions") from None
        return cls(key)

    def __call__(self, user_id: str) -> str:
        out = self._cache.get(user_id)
        if out is None:
            out = "p" + hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) < 1_000_000:
                self._cache[user_id] = out
        return out

    def array(self, ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonyms of an array of ids: one hash per distinct id."""
        uniq = pc.unique(ids)
        hashed = pa.array([self(u) for u in uniq.to_pylist()], pa.string())
        return hashed.take(pc.index_in(ids, value_set=uniq))
