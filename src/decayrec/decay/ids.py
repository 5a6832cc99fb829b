"""External ids at the edges, dense integers inside.

:class:`IdMap` maps string ids (users, items, categories) to dense ``int32`` codes and
back; :class:`PairMap` does the same for (user, key) pairs of codes, the rows of a
user-by-item or user-by-category decay state. Both are vectorised (Arrow hash kernels,
numpy sorts), so mapping millions of events costs no Python loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeAlias, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["IdMap", "PairMap", "pair_codes"]

_FORMAT = "decayrec.idmap"
_VERSION = 1

Strings: TypeAlias = pa.Array | pa.ChunkedArray | np.ndarray | Iterable[Any]


def _strings(values: Strings) -> pa.Array | pa.ChunkedArray:
    """Any array-like of ids as an Arrow string array (numbers are cast to their text)."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = pa.array(values if isinstance(values, np.ndarray) else list(values))
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    return values


def _codes_numpy(indices: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow int codes with nulls as -1, as a contiguous int32 numpy array."""
    filled = pc.fill_null(indices, -1)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks() if filled.num_chunks else pa.array([], pa.int32())
    return cast(np.ndarray, filled.to_numpy(zero_copy_only=False).astype(np.int32, copy=False))  # pyarrow has no stubs


class IdMap:
    """A bijection between external string ids and codes ``0 .. len - 1``.

    Build with :meth:`from_values` (ids sorted, so the same set of ids always gets the
    same codes) and grow with :meth:`extend` (existing codes never change).
    """

    def __init__(self, ids: pa.Array):
        ids = _strings(ids)
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if ids.null_count:
            raise ValueError("an IdMap cannot hold a null id")
        if len(pc.unique(ids)) != len(ids):
            raise ValueError("ids of an IdMap must be distinct")
        self._ids = ids

    @classmethod
    def from_values(cls, values: Strings) -> IdMap:
        """The distinct non-null ids among ``values``, sorted."""
        uniq = pc.unique(_strings(values)).drop_null()
        if isinstance(uniq, pa.ChunkedArray):
            uniq = uniq.combine_chunks()
        return cls(uniq.take(pc.sort_indices(uniq)))

    def extend(self, values: Strings) -> IdMap:
        """A map with the unseen ids of ``values`` appended (sorted); existing codes keep theirs."""
        values = _strings(values)
        unseen = pc.filter(values, pc.invert(pc.fill_null(pc.is_in(values, value_set=self._ids), True)))
        if len(unseen) == 0:
            return self
        fresh = IdMap.from_values(unseen).ids
        return IdMap(pa.concat_arrays([self._ids, fresh]))

    @property
    def ids(self) -> pa.Array:
        """The ids in code order."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"IdMap({len(self)} ids)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._ids.equals(other._ids)

    def encode(self, values: Strings) -> np.ndarray:
        """Codes of ``values`` as int32; -1 for ids not in the map and for nulls."""
        return _codes_numpy(pc.index_in(_strings(values), value_set=self._ids))

    def decode(self, codes: np.ndarray) -> pa.Array:
        """Ids of ``codes``; null where a code is -1."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.size and (codes.max() >= len(self) or codes.min() < -1):
            raise IndexError(f"codes must lie in [-1, {len(self)}), got {codes.min()}..{codes.max()}")
        return self._ids.take(pa.array(codes, mask=codes < 0))

    def to_json(self) -> str:
        """A plain-JSON form (no pickle): ``{"format", "version", "ids"}``."""
        return json.dumps({"format": _FORMAT, "version": _VERSION, "ids": self._ids.to_pylist()})

    @classmethod
    def from_json(cls, text: str) -> IdMap:
        """Read what :meth:`to_json` wrote."""
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ValueError("not a decayrec IdMap document")
        if doc.get("version") != _VERSION:
            raise ValueError(f"IdMap version {doc.get('version')} is not readable by this release (reads {_VERSION})")
        ids = doc.get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("an IdMap document's ids must be a list of strings")
        return cls(pa.array(ids, pa.string()))


class PairMap:
    """Dense codes for (user, key) pairs of codes, ordered by user then key.

    Pairs of one user are contiguous (:meth:`user_pairs`), so a user's profile is a
    slice of any ``(n_pairs, ...)`` state array.
    """

    def __init__(self, users: np.ndarray, keys: np.ndarray, n_keys: int):
        users = np.asarray(users, dtype=np.int64)
        keys = np.asarray(keys, dtype=np.int64)
        if users.shape != keys.shape or users.ndim != 1:
            raise ValueError("users and keys must be 1-d and of equal length")
        if keys.size and (keys.min() < 0 or keys.max() >= n_keys or users.min() < 0 or users.max() >= 2**31):
            raise ValueError(f"pair codes must be int32 codes with keys below n_keys={n_keys}")
        combined = users * n_keys + keys
        if combined.size > 1 and not np.all(combined[1:] > combined[:-1]):
            raise ValueError("pairs must be distinct and sorted by (user, key); build with PairMap.build")
        self.n_keys = int(n_keys)
        self._combined: np.ndarray = combined
        self.users = users.astype(np.int32)
        self.keys = keys  # int64: n_keys may exceed int32 for a pair-of-pairs space
        self._lookup: pa.Array | None = None

    @classmethod
    def build(cls, users: np.ndarray, keys: np.ndarray, n_keys: int) -> tuple[PairMap, np.ndarray]:
        """The map of the distinct pairs among events, and each event's pair code.

        Sorts the combined int64 ``user * n_keys + key`` with each event's index packed
        into the low bits: a value sort (SIMD in numpy) beats argsort and hashing. Falls
        back to Arrow's hash ``dictionary_encode`` when the packed key would not fit.
        """
        users = np.asarray(users, dtype=np.int64)
        keys = np.asarray(keys, dtype=np.int64)
        if users.shape != keys.shape or users.ndim != 1:
            raise ValueError("users and keys must be 1-d and of equal length")
        if users.size and (users.min() < 0 or keys.min() < 0 or keys.max() >= n_keys):
            raise ValueError(f"codes must be non-negative with keys below n_keys={n_keys} (drop unknown ids, -1, first)")
        combined = users * n_keys + keys
        n = combined.size
        bits = max(n - 1, 1).bit_length()
        if n and int(combined.max()) >= 1 << (62 - bits):
            encoded = pa.array(combined).dictionary_encode()
            uniq = encoded.dictionary.to_numpy()
            order = np.argsort(uniq)
            rank = np.empty(order.size, dtype=np.int32)
            rank[order] = np.arange(order.size, dtype=np.int32)
            pairs = uniq[order]
            codes = rank[encoded.indices.to_numpy()]
        else:
            combined <<= bits
            combined |= np.arange(n, dtype=np.int64)
            combined.sort()
            event = combined & ((1 << bits) - 1)
            combined >>= bits
            first = np.ones(n, dtype=bool)
            np.not_equal(combined[1:], combined[:-1], out=first[1:])
            pairs = combined[first]
            codes = np.empty(n, dtype=np.int32)
            codes[event] = np.cumsum(first, dtype=np.int32) - 1
        return cls(pairs // n_keys, pairs % n_keys, n_keys), codes

    def __len__(self) -> int:
        return self._combined.size

    def __repr__(self) -> str:
        return f"PairMap({len(self)} pairs, n_keys={self.n_keys})"

    def encode(self, users: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Pair codes as int32; -1 for pairs not in the map (or any -1 input)."""
        users = np.asarray(users, dtype=np.int64)
        keys = np.asarray(keys, dtype=np.int64)
        bad = (users < 0) | (keys < 0) | (keys >= self.n_keys)
        if self._lookup is None:
            self._lookup = pa.array(self._combined)
        combined = pa.array(users * self.n_keys + keys, mask=bad)
        return _codes_numpy(pc.index_in(combined, value_set=self._lookup))

    def decode(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(users, keys)`` of pair codes."""
        codes = np.asarray(codes, dtype=np.intp)
        return self.users[codes], self.keys[codes]

    def user_pairs(self, user: int) -> slice:
        """The slice of pair codes that belong to ``user``."""
        lo, hi = np.searchsorted(self._combined, [user * self.n_keys, (user + 1) * self.n_keys])
        return slice(int(lo), int(hi))


def pair_codes(users: np.ndarray, keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, PairMap]:
    """Each event's dense (user, key) pair code, and the :class:`PairMap` that decodes it."""
    pairs, codes = PairMap.build(users, keys, n_keys)
    return codes, pairs
