"""The online decay state: ``S`` for many keys and several half-lives, kept current in O(1).

Each key holds one value per scale and the time that value refers to (``last``). To
move a key to a later time multiply by ``2 ** (-dt / h)``; to add an event, move to its
time and add its weight. An event older than ``last`` is decayed to ``last`` instead:
time never moves backwards, and the state stays exact for any arrival order. Two states
merge exactly (bring both to the later time and add), so batch partitions, a stream
and other machines all build the same numbers.
"""

from __future__ import annotations

import math
from os import PathLike
from typing import IO, TypeAlias

import numpy as np

from decayrec.decay.kernels import LN2, _half_lives

__all__ = ["DecayState"]

_FORMAT_VERSION = 1
_MIN_CAPACITY = 16
_INF = math.inf

FileLike: TypeAlias = str | PathLike[str] | IO[bytes]


class DecayState:
    """Decayed sums for keys ``0 .. n_keys - 1`` at scales ``half_lives`` (days).

    Parameters
    ----------
    half_lives
        Half-lives in days, shape ``(n_scales,)``.
    n_keys
        Keys to allocate up front; the state grows when a larger key arrives.

    Notes
    -----
    ``value`` and ``last`` are read-only views; change the state through its methods.
    A key never updated has value 0 and ``last = -inf``.
    """

    _value: np.ndarray
    _last: np.ndarray
    _value_mv: memoryview[float]
    _last_mv: memoryview[float]

    def __init__(self, half_lives: np.ndarray, n_keys: int = 0):
        self.half_lives = _half_lives(half_lives)
        self.half_lives.flags.writeable = False
        self._rates_np = -LN2 / self.half_lives
        # Plain Python floats and memoryviews on the hot path: numpy scalar indexing
        # costs ~100 ns a touch, a memoryview touch ~20 ns and yields a Python float.
        self._rates = [float(r) for r in self._rates_np]
        self._s = self.half_lives.size
        self._n = 0
        self._alloc(max(int(n_keys), _MIN_CAPACITY))
        self._n = int(n_keys)

    # -- storage -----------------------------------------------------------------------
    def _alloc(self, capacity: int) -> None:
        value = np.zeros((capacity, self._s))
        last = np.full(capacity, -np.inf)
        if self._n:
            value[: self._n] = self._value[: self._n]
            last[: self._n] = self._last[: self._n]
        self._value, self._last = value, last
        # numpy's stubs declare ndarray a buffer (__buffer__) only for Python >= 3.12; mypy checks 3.11.
        self._value_mv = memoryview(value.reshape(-1))  # type: ignore[arg-type]
        self._last_mv = memoryview(last)  # type: ignore[arg-type]

    def _ensure(self, n_keys: int) -> None:
        """Make keys below ``n_keys`` exist (doubling capacity: amortised O(1) per key)."""
        if n_keys > self._last.size:
            self._alloc(max(n_keys, 2 * self._last.size))
        if n_keys > self._n:
            self._n = n_keys

    @property
    def n_keys(self) -> int:
        return self._n

    @property
    def n_scales(self) -> int:
        return self._s

    @property
    def value(self) -> np.ndarray:
        """``(n_keys, n_scales)``: each key's state at its own ``last`` time (read-only view)."""
        view = self._value[: self._n]
        view.flags.writeable = False
        return view

    @property
    def last(self) -> np.ndarray:
        """``(n_keys,)``: the time each key's value refers to (read-only view)."""
        view = self._last[: self._n]
        view.flags.writeable = False
        return view

    @property
    def nbytes(self) -> int:
        """Bytes of state proper (values and times of the keys in use, not spare capacity)."""
        return self._n * (self._s + 1) * 8

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"DecayState({self._n} keys, half_lives={self.half_lives.tolist()})"

    # -- online updates ------------------------------------------------------------------
    def update(self, key: int, t: float, w: float = 1.0) -> None:
        """Add one event of weight ``w`` at time ``t`` (days) to ``key``: O(n_scales).

        An event older than the key's ``last`` is decayed to ``last`` and added.
        """
        if key >= self._n or key < 0:
            if key < 0:
                raise ValueError(f"keys must be non-negative codes, got {key}")
            self._ensure(key + 1)
        if not -_INF < t < _INF:  # also false for NaN
            raise ValueError(f"the event time must be finite days, got {t!r}")
        last = self._last_mv[key]
        vals = self._value_mv
        i = key * self._s
        if t > last:
            self._last_mv[key] = t
            dt = t - last
            for r in self._rates:
                vals[i] = vals[i] * math.exp(r * dt) + w
                i += 1
        elif t == last:
            for _ in self._rates:
                vals[i] += w
                i += 1
        else:
            age = last - t
            for r in self._rates:
                vals[i] += w * math.exp(r * age)
                i += 1

    def update_many(self, keys: np.ndarray, times: np.ndarray, weights: np.ndarray | float = 1.0) -> None:
        """Add a batch of events, in any order; equal to calling :meth:`update` on each.

        Each touched key moves to ``max(last, its latest event)``; every event is decayed
        to that time and summed per key with ``bincount``.
        """
        keys = np.asarray(keys)
        times = np.asarray(times, dtype=np.float64)
        if keys.ndim != 1 or keys.shape != times.shape or keys.dtype.kind not in "iu":
            raise ValueError("keys (integer codes) and times must be 1-d and of equal length")
        if keys.size == 0:
            return
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), keys.shape)
        if keys.min() < 0:
            raise ValueError("keys must be non-negative codes (unknown ids encode to -1: drop them first)")
        if not np.isfinite(times).all():
            raise ValueError("event times must be finite days (found NaN or inf)")
        self._ensure(int(keys.max()) + 1)
        # A small batch touches few keys: work on those (a sort of the batch); a large
        # one works on every key (linear passes, no sort of millions of events).
        if keys.size * 8 < self._n:
            touched, slot = np.unique(keys, return_inverse=True)
        else:
            touched, slot = None, keys
        old = self._last[: self._n] if touched is None else self._last[touched]
        new = old.copy()
        np.maximum.at(new, slot, times)
        moved = new > old
        rows = np.flatnonzero(moved) if touched is None else touched[moved]
        # Keys seen for the first time have old = -inf: factor exp(-inf) = 0 on a value of 0.
        shift = np.exp(np.multiply.outer(new[moved] - old[moved], self._rates_np))
        self._value[rows] *= shift
        self._last[rows] = new[moved]

        age = new[slot] - times
        buf = np.empty_like(age)
        width = new.size
        target = self._value[: self._n] if touched is None else np.zeros((width, self._s))
        for j, rate in enumerate(self._rates_np):
            np.multiply(age, rate, out=buf)
            np.exp(buf, out=buf)
            buf *= weights
            target[:, j] += np.bincount(slot, buf, minlength=width)
        if touched is not None:
            self._value[touched] += target

    @classmethod
    def from_events(
        cls,
        keys: np.ndarray,
        times: np.ndarray,
        weights: np.ndarray | float,
        half_lives: np.ndarray,
        at: float | None = None,
        n_keys: int | None = None,
    ) -> DecayState:
        """Build a state from a batch of events.

        With ``at``, events after it are left out and every key is moved to ``at``
        (the state "as of at"); without, each key stays at its latest event.
        """
        keys = np.asarray(keys)
        times = np.asarray(times, dtype=np.float64)
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), keys.shape)
        size = int(keys.max()) + 1 if keys.size else 0
        state = cls(half_lives, n_keys=max(size, n_keys or 0))
        if at is not None:
            keep = times <= at
            keys, times, weights = keys[keep], times[keep], weights[keep]
        state.update_many(keys, times, weights)
        if at is not None:
            state.advance(at)
        return state

    # -- moving in time ----------------------------------------------------------------
    def _check_not_after(self, last: np.ndarray, t: float, keys: np.ndarray | None = None) -> None:
        late = last > t
        if late.any():
            where = int(np.flatnonzero(late)[0])
            key = where if keys is None else int(keys[where])
            raise ValueError(
                f"key {key} was updated at {last[where]!r}, after t={t!r}; a state cannot move back "
                "in time: rebuild it as of t from the events (decayed_sums or DecayState.from_events with at)"
            )

    def value_at(self, keys: np.ndarray, t: float) -> np.ndarray:
        """Values of ``keys`` moved to time ``t``, ``(len(keys), n_scales)``; the state is unchanged.

        Keys beyond ``n_keys`` read as 0. Raises ``ValueError`` if a key was updated after ``t``.
        """
        keys = np.atleast_1d(np.asarray(keys, dtype=np.int64))
        if keys.size and keys.min() < 0:
            raise ValueError("keys must be non-negative codes")
        known = keys < self._n
        out = np.zeros((keys.size, self._s))
        k = keys[known]
        last = self._last[k]
        self._check_not_after(last, t, k)
        with np.errstate(invalid="ignore"):
            out[known] = self._value[k] * np.exp(np.multiply.outer(t - last, self._rates_np))
        return out

    def advance(self, t: float) -> None:
        """Move every key that has been updated to time ``t`` (no key may be past ``t``)."""
        if not np.isfinite(t):
            raise ValueError(f"t must be a finite time in days, got {t!r}")
        last = self._last[: self._n]
        self._check_not_after(last, t)
        seen = np.flatnonzero(np.isfinite(last))
        self._value[seen] *= np.exp(np.multiply.outer(t - last[seen], self._rates_np))
        self._last[seen] = t

    def advance_keys(self, keys: np.ndarray, t: float) -> None:
        """Move the given keys (updated ones, none past ``t``) to time ``t``."""
        keys = np.unique(np.asarray(keys, dtype=np.int64))
        keys = keys[keys < self._n]
        last = self._last[keys]
        self._check_not_after(last, t, keys)
        seen = keys[np.isfinite(last)]
        self._value[seen] *= np.exp(np.multiply.outer(t - self._last[seen], self._rates_np))
        self._last[seen] = t

    def subtract(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Take ``values`` ``(len(keys), n_scales)``, given at each key's ``last``, out of the keys (not below 0).

        The inverse of adding events, for erasing one contributor's share of a sum.
        """
        keys = np.asarray(keys, dtype=np.int64)
        np.subtract.at(self._value, keys, np.asarray(values, dtype=np.float64))
        self._value[keys] = np.maximum(self._value[keys], 0.0)

    def clear(self, keys: np.ndarray) -> None:
        """Forget the given keys: value 0 and never updated."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[keys < self._n]
        self._value[keys] = 0.0
        self._last[keys] = -np.inf

    def merge(self, other: DecayState) -> DecayState:
        """A new state holding the events of both: each key at the later of its two times."""
        if not np.array_equal(self.half_lives, other.half_lives):
            raise ValueError(f"cannot merge states with half-lives {self.half_lives.tolist()} and {other.half_lives.tolist()}")
        n = max(self._n, other._n)
        out = DecayState(self.half_lives, n_keys=n)
        la, lb = np.full(n, -np.inf), np.full(n, -np.inf)
        va, vb = np.zeros((n, self._s)), np.zeros((n, self._s))
        la[: self._n], va[: self._n] = self.last, self.value
        lb[: other._n], vb[: other._n] = other.last, other.value
        at = np.maximum(la, lb)
        value = np.zeros((n, self._s))
        for last, val in ((la, va), (lb, vb)):
            seen = np.isfinite(last)
            value[seen] += val[seen] * np.exp(np.multiply.outer(at[seen] - last[seen], self._rates_np))
        out._value[:n] = value
        out._last[:n] = at
        return out

    # -- persistence ---------------------------------------------------------------------
    def to_npz(self, file: FileLike) -> None:
        """Save to ``.npz`` (plain arrays, readable with ``allow_pickle=False``)."""
        np.savez(
            file,
            format_version=np.int64(_FORMAT_VERSION),
            half_lives=self.half_lives,
            value=self.value,
            last=self.last,
        )

    @classmethod
    def from_npz(cls, file: FileLike) -> DecayState:
        """Load what :meth:`to_npz` saved."""
        with np.load(file, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"decay state format {version} is not readable by this release (reads {_FORMAT_VERSION})")
            half_lives, value, last = data["half_lives"], data["value"], data["last"]
        if value.ndim != 2 or value.shape != (last.size, half_lives.size):
            raise ValueError(f"inconsistent decay state arrays: value {value.shape}, last {last.shape}")
        state = cls(half_lives, n_keys=last.size)
        state._value[: last.size] = value
        state._last[: last.size] = last
        return state
