"""The recommendation table (``user_id, item_id, rank, score, reason``) built from codes, and per-user tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from decayrec.decay.ids import IdMap
from decayrec.recommend.base import REC_SCHEMA
from decayrec.recommend.fallback import Fallback, fallback_rows
from decayrec.recommend.reasons import merge_reasons, plain
from decayrec.recommend.topk import blend_topk, rank_in_group

__all__ = ["personal_table", "rec_table"]


def personal_table(
    req: pa.Array,
    codes: np.ndarray,
    items: IdMap,
    k: int,
    elapsed: float,
    *,
    main: Callable[[np.ndarray], sp.spmatrix],
    main_reason: Callable[[np.ndarray, np.ndarray], pa.Array],
    fallback: Fallback,
    fill: bool = True,
    exclude: sp.csr_matrix | None = None,
) -> pa.Table:
    """Recommendations of a personal model: its own candidates first, then popular items.

    ``codes`` are the requested users' codes (-1: cold start, answered by ``fallback``);
    ``main`` and ``exclude`` are as for :func:`blend_topk`; ``main_reason(users, items)``
    words the model's own rows. Rows from the fallback score 0 for known users (scores never
    rise down a list); a cold-start user's rows carry the popularity score.
    """
    known, cold = np.flatnonzero(codes >= 0), np.flatnonzero(codes < 0)
    users = codes[known]
    row, item, key = blend_topk(users, len(items), k, main, fallback.fill_key() if fill else None, exclude)
    own = key > 0
    reason = merge_reasons(
        own,
        lambda i: main_reason(users[row[i]], item[i]),
        lambda i: fallback.reason.take(pa.array(item[i])),
    )
    score = np.where(own, key, 0.0)
    return rec_table(req, items, [(known[row], item, score, reason), fallback_rows(cold, fallback, k, elapsed, cold=True)])


# -- output ---------------------------------------------------------------------------------
def rec_table(
    req: pa.Array,
    items: IdMap,
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]],
) -> pa.Table:
    """The output table from ``(pos, item, score, reason)`` parts.

    ``pos`` indexes ``req``; within one part, a user's rows are in rank order. Rows come
    out in request order, ranked from 1.
    """
    parts = [p for p in parts if p[0].size]
    if not parts:
        return REC_SCHEMA.empty_table()
    pos = np.concatenate([p[0] for p in parts])
    item = np.concatenate([p[1] for p in parts])
    score = np.concatenate([p[2] for p in parts]).astype(np.float64)
    reason = pa.concat_arrays([plain(p[3]) for p in parts])
    order = np.argsort(pos, kind="stable")
    pos, item, score = pos[order], item[order], score[order]
    rank = rank_in_group(pos) + 1
    columns = [
        req.take(pa.array(pos)),
        items.decode(item),
        pa.array(rank, pa.int32()),
        pa.array(score, pa.float64()),
        reason.take(pa.array(order)),
    ]
    return pa.Table.from_arrays(columns, schema=REC_SCHEMA)
