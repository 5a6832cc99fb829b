"""The reason column: short sentences from the strongest evidence behind each row ("you bought this 3 days ago")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema

__all__ = [
    "COLD_PREFIX",
    "PARTICIPLE",
    "PHRASE",
    "ago",
    "by_type",
    "join_text",
    "merge_reasons",
    "plain",
    "shoppers_text",
    "span_text",
    "times_text",
]

PHRASE: Final = {
    "view": "viewed this",
    "click": "clicked this",
    "cart": "put this in your cart",
    "fav": "saved this",
    "purchase": "bought this",
}
PARTICIPLE: Final = {"view": "viewed", "click": "clicked", "cart": "put in your cart", "fav": "saved", "purchase": "bought"}
COLD_PREFIX: Final = "new visitor: "


def merge_reasons(
    mask: np.ndarray,
    when_true: Callable[[np.ndarray], pa.Array],
    when_false: Callable[[np.ndarray], pa.Array],
) -> pa.Array:
    """One reason per row: ``when_true(idx)`` for rows where ``mask`` holds, ``when_false(idx)`` elsewhere."""
    yes, no = np.flatnonzero(mask), np.flatnonzero(~mask)
    empty = pa.array([], pa.string())
    both = pa.concat_arrays([plain(when_true(yes)) if yes.size else empty, plain(when_false(no)) if no.size else empty])
    where = np.empty(mask.size, dtype=np.int64)
    where[np.concatenate([yes, no])] = np.arange(mask.size)
    return both.take(pa.array(where))


# -- reason text, vectorised ----------------------------------------------------------------
def join_text(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literals."""
    return pc.binary_join_element_wise(*parts, "")


def _num(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string())


def by_type(words: Mapping[str, str], etype: np.ndarray) -> pa.Array:
    return pa.array([words[e] for e in schema.EVENT_TYPES]).take(pa.array(np.asarray(etype, dtype=np.int64)))


def times_text(count: np.ndarray) -> pa.Array:
    text = join_text(_num(count), " times")
    text = pc.if_else(pa.array(count == 2), "twice", text)
    return pc.if_else(pa.array(count == 1), "once", text)


def shoppers_text(n: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(n == 1), "1 shopper", join_text(_num(n), " shoppers"))


def ago(days: np.ndarray) -> pa.Array:
    """``"just now"``, ``"5 minutes ago"``, ``"1 hour ago"``, ``"12 days ago"`` (whole units, rounded down)."""
    days = np.maximum(np.asarray(days, dtype=np.float64), 0.0)
    unit = np.where(days >= 1, 2, np.where(days * 24 >= 1, 1, 0))
    value = np.floor(days * np.array([1440.0, 24.0, 1.0])[unit])
    names = np.array(["minute", "hour", "day"])[unit]
    text = join_text(_num(value), " ", pa.array(names), pa.array(np.where(value == 1, "", "s")), " ago")
    return pc.if_else(pa.array(value < 1), "just now", text)


def span_text(days: float) -> str:
    """``"7 days"``, ``"1 day"``, ``"12 hours"``."""
    value, unit = (days, "day") if days >= 1 else (days * 24, "hour")
    return f"{value:g} {unit}{'' if value == 1 else 's'}"


def plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    return array
