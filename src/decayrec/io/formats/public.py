"""Readers for the public datasets, as they are published (``--format NAME``).

Each reader streams its files as raw string batches named as in :mod:`decayrec.schema`,
with ``_line`` (the physical line of the row in ``source``, header = 1) and, where the
layout itself decides a row cannot be used, ``_reason``. It only does what the layout
needs (renaming, constants, the epoch unit, deriving a timestamp, user or category);
trimming, aliases and parsing happen once, in :mod:`decayrec.io.validate`.

Choices each layout forces (the main ones are also in the reader's one-line description):

- ``retailrocket``: ``events.csv``, epochs in ms; ``transactionid`` is not used. With
  ``item_properties_part*.csv`` alongside, an item's category is its *latest*
  ``categoryid`` value (by the properties' timestamp), applied to all its events.
- ``taobao``: ``UserBehavior.csv`` without header (user, item, category, behaviour,
  seconds); a header row, if a copy has one, is recognised and skipped.
- ``rees46``: ``remove_from_cart`` rows are quarantined (not an interest signal);
  ``category_id`` is the numeric ``category_id`` (not ``category_code``).
- ``instacart`` / ``olist``: see :mod:`decayrec.io.formats.public_orders`.
- ``movielens``: every rating is a ``purchase`` (a consumption, as with the review-based
  purchase proxies); the rating value is not used. ``movies.csv``/``movies.dat`` give the
  first listed genre as category (``(no genres listed)`` = unknown).
- ``cdnow``: no item ids: every event has item ``cdnow``; quantity = CDs, price = dollars
  per CD, timestamp = the day at 00:00 UTC.
- ``diginetica``: anonymous sessions (``userId`` empty or ``NA``) get user
  ``session:<sessionId>``; timestamp = ``eventdate`` 00:00 UTC + ``timeframe`` ms (the
  dataset gives only the day and the time since the session's first event). Also reads
  ``train-purchases.csv`` (as ``purchase``) and ``product-categories.csv``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from decayrec import schema
from decayrec.errors import InputError
from decayrec.io.formats import public_orders
from decayrec.io.formats.public_common import (
    WHOLE_LINE,
    Duck,
    classify,
    first_line,
    header_names,
    no_main_file,
    norm,
    require,
    sniff_delimiter,
    sql_str,
)
from decayrec.io.source import REASON, RawBatch, Reader, check_readable, csv_batches, read_header

U, I, E, T = schema.USER, schema.ITEM, schema.EVENT, schema.TIMESTAMP  # noqa: E741 - the columns, named as in the SQL

REMOVE_FROM_CART_REASON = "event type remove_from_cart is not modelled (taking an item out of the cart is not an interest signal)"


def _pick(by_norm: dict[str, str], wanted: dict[str, str]) -> dict[str, str]:
    """Source column -> target name, for the normalised names of ``wanted`` present in the header."""
    return {by_norm[key]: target for key, target in wanted.items() if key in by_norm}


def _category_join(has_categories: bool) -> tuple[str, str]:
    """The select-list item and join clause that attach ``cat.category_id`` by item (or a NULL)."""
    if has_categories:
        return "cat.category_id", "LEFT JOIN cat ON cat.key = trim(b.item_id)"
    return "CAST(NULL AS VARCHAR) AS category_id", ""


# --- RetailRocket --------------------------------------------------------------------------

_RR_EVENTS = {"timestamp": "timestamp", "visitorid": "visitorid", "event": "event", "itemid": "itemid"}
_RR_PROPS = {"timestamp": "timestamp", "itemid": "itemid", "property": "property", "value": "value"}
_RR_EXPECTED = "RetailRocket events.csv (timestamp,visitorid,event,itemid,transactionid), optionally with item_properties_part1.csv/part2.csv"


def _retailrocket(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    roles = classify(
        paths,
        {"events": frozenset({"visitorid", "event", "itemid"}), "properties": frozenset({"itemid", "property", "value"})},
        [],
        _RR_EVENTS,
        _RR_EXPECTED,
    )
    if not roles["events"]:
        raise no_main_file(paths, _RR_EVENTS, _RR_EXPECTED)
    for role, needed in (("events", _RR_EVENTS), ("properties", _RR_PROPS)):
        for path, _, found, by_norm in roles[role]:
            require(path, found, by_norm, needed, f"give {_RR_EXPECTED}")
    duck = Duck()
    try:
        props = []
        for path, _, found, _by_norm in roles["properties"]:
            props.append(
                f'SELECT trim(itemid) AS key, trim(value) AS category_id, try_cast(trim("timestamp") AS BIGINT) AS ts '
                f"FROM {duck.csv(path, found)} WHERE trim(property) = 'categoryid'"
            )
        if props:
            duck.create(
                "cat",
                f"SELECT key, arg_max(category_id, ts) AS category_id FROM ({' UNION ALL '.join(props)}) GROUP BY key",
                roles["properties"][0][0],
            )
        category, join = _category_join(bool(props))
        transform = duck.transform(f"SELECT b.*, {category} FROM b {join} ORDER BY b._pos")
        for path, _, _found, by_norm in roles["events"]:
            columns = _pick(by_norm, {"timestamp": T, "visitorid": U, "event": E, "itemid": I})
            yield from csv_batches(path, columns=columns, epoch_unit="ms", block_bytes=block_bytes, transform=transform)
    finally:
        duck.close()


# --- Taobao UserBehavior -------------------------------------------------------------------

_TAOBAO_NAMES = [U, I, schema.CATEGORY, E, T]


def _taobao(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    for path in paths:
        row = read_header(path)
        if len(row) == 5 and norm(row[0]).startswith("user") and norm(row[1]).startswith("item"):
            # A copy that added a header row (the published file has none): same column order.
            columns = dict(zip(row, _TAOBAO_NAMES))
            yield from csv_batches(path, columns=columns, epoch_unit="s", block_bytes=block_bytes)
        else:
            yield from csv_batches(
                path,
                columns={n: n for n in _TAOBAO_NAMES},
                header=False,
                names=_TAOBAO_NAMES,
                epoch_unit="s",
                block_bytes=block_bytes,
            )


# --- REES46 ---------------------------------------------------------------------------------

_REES46 = {"eventtime": "event_time", "eventtype": "event_type", "productid": "product_id", "userid": "user_id"}
_REES46_COLUMNS = {
    "eventtime": T,
    "eventtype": E,
    "productid": I,
    "categoryid": schema.CATEGORY,
    "price": schema.PRICE,
    "userid": U,
    "usersession": schema.SESSION,
}


def _rees46_rows(table: pa.Table) -> pa.Table:
    """``2019-10-01 00:00:00 UTC`` -> ``...+00:00``; ``remove_from_cart`` rows get their reason."""
    ts = pc.replace_substring_regex(table[T], r"\s*UTC\s*$", "+00:00")
    table = table.set_column(table.column_names.index(T), T, ts)
    event = pc.utf8_lower(pc.utf8_trim_whitespace(table[E]))
    removed = pc.fill_null(pc.equal(event, "remove_from_cart"), False)
    reason = pc.if_else(removed, pa.scalar(REMOVE_FROM_CART_REASON), pa.scalar(None, pa.string()))
    return table.append_column(REASON, reason)


def _rees46(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    for path in paths:
        found, by_norm = header_names(path)
        require(
            path,
            found,
            by_norm,
            _REES46,
            "give a REES46 monthly file such as 2019-Oct.csv (event_time,event_type,product_id,category_id,"
            "category_code,brand,price,user_id,user_session)",
        )
        columns = _pick(by_norm, _REES46_COLUMNS)
        yield from csv_batches(path, columns=columns, block_bytes=block_bytes, transform=_rees46_rows)


# --- MovieLens ------------------------------------------------------------------------------

_ML_RATINGS = {"userid": "userId", "movieid": "movieId", "rating": "rating", "timestamp": "timestamp"}
_ML_EXPECTED = (
    "MovieLens ratings.csv (userId,movieId,rating,timestamp), ratings.dat (UserID::MovieID::Rating::Timestamp) "
    "or u.data (tab-separated), optionally with movies.csv or movies.dat"
)


def _movielens_kind(path: Path) -> tuple[str, list[str], dict[str, str]]:
    check_readable(path)
    line = first_line(path)
    if "::" in line:
        parts = [p.strip() for p in line.split("::")]
        if len(parts) == 3 and parts[0].isdigit():
            return "movies.dat", [], {}
        if len(parts) == 4 and not parts[2].replace(".", "", 1).isdigit():
            raise InputError(f"{path} looks like MovieLens tags.dat (its third field is not a rating)", f"give {_ML_EXPECTED}")
        return "ratings.dat", [], {}
    if "\t" in line and len(line.split("\t")) == 4:
        return "u.data", [], {}
    found, by_norm = header_names(path)
    if {"movieid", "genres"} <= set(by_norm):
        return "movies.csv", found, by_norm
    if {"movieid", "imdbid"} <= set(by_norm):
        return "links.csv", found, by_norm  # ids of other sites only: ignored
    require(path, found, by_norm, _ML_RATINGS, f"give {_ML_EXPECTED}")
    return "ratings.csv", found, by_norm


def _movielens(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    kinds = [(path, *_movielens_kind(path)) for path in paths]
    if not any(kind.startswith(("ratings", "u.")) for _, kind, _, _ in kinds):
        raise no_main_file(paths, _ML_RATINGS, _ML_EXPECTED)
    duck = Duck()
    try:
        genres = []
        for path, kind, found, _ in kinds:
            if kind == "movies.csv":
                genres.append(f"SELECT trim(movieid) AS key, genres FROM {duck.csv(path, found)}")
            elif kind == "movies.dat":  # ML-1M/10M: MovieID::Title::Genres, Latin-1 in ML-1M
                lines = (
                    f"read_csv({sql_str(str(path))}, delim={sql_str(WHOLE_LINE)}, header=false, quote='', "
                    f"auto_detect=false, columns={{'line': 'VARCHAR'}}, encoding='latin-1', ignore_errors=true)"
                )
                genres.append(
                    f"SELECT trim(p[1]) AS key, p[len(p)] AS genres FROM (SELECT string_split(line, '::') AS p FROM {lines})"
                )
        if genres:
            duck.create(
                "cat",
                "SELECT key, any_value(nullif(nullif(trim(split_part(genres, '|', 1)), ''), '(no genres listed)')) "
                f"AS category_id FROM ({' UNION ALL '.join(genres)}) GROUP BY key",
                paths[0],
            )
        category, join = _category_join(bool(genres))
        rated = duck.transform(
            f"SELECT b.user_id, b.item_id, 'purchase' AS event, b.\"timestamp\", {category} FROM b {join} ORDER BY b._pos"
        )
        # ratings.dat: each physical line is one field, split on '::' here (vectorised).
        split = duck.transform(
            f"""
            SELECT b.user_id, b.item_id, 'purchase' AS event, b."timestamp", {category}, b._reason, b._raw
            FROM (SELECT _pos, p[1] AS user_id, p[2] AS item_id, p[4] AS "timestamp",
                         CASE WHEN len(p) <> 4 THEN 'wrong number of fields: expected 4 separated by ::, found ' || len(p) END AS _reason,
                         CASE WHEN len(p) <> 4 THEN line END AS _raw
                  FROM (SELECT _pos, line, string_split(line, '::') AS p FROM b)) b {join}
            ORDER BY b._pos
            """
        )
        for path, kind, _found, by_norm in kinds:
            if kind == "ratings.csv":
                columns = _pick(by_norm, {"userid": U, "movieid": I, "timestamp": T})
                yield from csv_batches(path, columns=columns, epoch_unit="s", block_bytes=block_bytes, transform=rated)
            elif kind == "u.data":
                names = [U, I, "rating", T]
                yield from csv_batches(
                    path,
                    columns={U: U, I: I, T: T},
                    delimiter="\t",
                    header=False,
                    names=names,
                    epoch_unit="s",
                    block_bytes=block_bytes,
                    transform=rated,
                )
            elif kind == "ratings.dat":
                yield from csv_batches(
                    path,
                    columns={"line": "line"},
                    delimiter=WHOLE_LINE,
                    header=False,
                    names=["line"],
                    epoch_unit="s",
                    block_bytes=block_bytes,
                    transform=split,
                )
    finally:
        duck.close()


# --- CDNOW ----------------------------------------------------------------------------------

_CDNOW_SQL = """
SELECT p[1] AS user_id, 'cdnow' AS item_id, 'purchase' AS event,
       CASE WHEN regexp_full_match(p[2], '[0-9]{8}')
            THEN substr(p[2], 1, 4) || '-' || substr(p[2], 5, 2) || '-' || substr(p[2], 7, 2) ELSE p[2] END AS "timestamp",
       p[3] AS quantity,
       CASE WHEN try_cast(p[3] AS DOUBLE) > 0 AND try_cast(p[4] AS DOUBLE) IS NOT NULL
            THEN CAST(try_cast(p[4] AS DOUBLE) / try_cast(p[3] AS DOUBLE) AS VARCHAR) ELSE p[4] END AS price,
       CASE WHEN len(p) <> 4 THEN 'wrong number of fields: expected 4 separated by blanks (customer, YYYYMMDD, CDs, dollars), found ' || len(p)
            WHEN NOT regexp_full_match(p[2], '[0-9]{8}') THEN 'date is not YYYYMMDD: ''' || left(p[2], 40) || ''''
            WHEN try_cast(p[3] AS DOUBLE) = 0 THEN 'zero CDs bought: no unit price'
       END AS _reason,
       CASE WHEN len(p) <> 4 THEN line END AS _raw
FROM (SELECT _pos, line, string_split_regex(trim(line), '\\s+') AS p FROM b)
"""


def _cdnow(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    duck = Duck()
    try:
        transform = duck.transform(_CDNOW_SQL)
        for path in paths:
            yield from csv_batches(
                path,
                columns={"line": "line"},
                delimiter=WHOLE_LINE,
                header=False,
                names=["line"],
                block_bytes=block_bytes,
                transform=transform,
            )
    finally:
        duck.close()


# --- Diginetica -----------------------------------------------------------------------------

_DG_VIEWS = {"sessionid": "sessionId", "itemid": "itemId", "timeframe": "timeframe", "eventdate": "eventdate"}
_DG_EXPECTED = (
    "Diginetica train-item-views.csv (sessionId;userId;itemId;timeframe;eventdate), optionally "
    "train-purchases.csv and product-categories.csv (itemId;categoryId)"
)


def _diginetica_sql(event: str, category: str, join: str, has_user: bool) -> str:
    user = "b.user_id" if has_user else "CAST(NULL AS VARCHAR)"
    return f"""
    SELECT CASE WHEN nullif(trim({user}), '') IS NOT NULL AND upper(trim({user})) <> 'NA' THEN {user}
                WHEN nullif(trim(b.session_id), '') IS NOT NULL THEN 'session:' || trim(b.session_id) END AS user_id,
           b.item_id, '{event}' AS event,
           strftime(CAST(b.d AS TIMESTAMP) + to_milliseconds(CAST(round(b.ms) AS BIGINT)), '%Y-%m-%dT%H:%M:%S.%gZ') AS "timestamp",
           b.session_id, {category},
           CASE WHEN b.d IS NULL THEN 'eventdate is not a date (YYYY-MM-DD): ''' || left(coalesce(b.eventdate, ''), 40) || ''''
                WHEN b.ms IS NULL OR abs(b.ms) > 1e15 THEN 'timeframe is not a number of milliseconds: '''
                     || left(coalesce(b.timeframe, ''), 40) || ''''
           END AS _reason
    FROM (SELECT *, try_cast(trim(eventdate) AS DATE) AS d, try_cast(trim(timeframe) AS DOUBLE) AS ms FROM b) b {join}
    ORDER BY b._pos
    """


def _diginetica(paths: Sequence[Path], block_bytes: int) -> Iterator[RawBatch]:
    roles = classify(
        paths,
        {
            "purchases": frozenset({"sessionid", "itemid", "timeframe", "eventdate", "ordernumber"}),
            "views": frozenset({"sessionid", "itemid", "timeframe", "eventdate"}),
            "categories": frozenset({"itemid", "categoryid"}),
        },
        [frozenset({"itemid", "pricelog2"}), frozenset({"queryid", "sessionid"})],
        _DG_VIEWS,
        _DG_EXPECTED,
        delimiter=(";", ","),
    )
    if not roles["views"] and not roles["purchases"]:
        raise no_main_file(paths, _DG_VIEWS, _DG_EXPECTED, sniff_delimiter(paths[0], ";", ","))
    duck = Duck()
    try:
        cats = [
            f"SELECT trim(itemid) AS key, trim(categoryid) AS category_id FROM {duck.csv(path, found, delim)}"
            for path, delim, found, _ in roles["categories"]
        ]
        if cats:
            duck.create(
                "cat",
                f"SELECT key, any_value(category_id) AS category_id FROM ({' UNION ALL '.join(cats)}) GROUP BY key",
                roles["categories"][0][0],
            )
        category, join = _category_join(bool(cats))
        for role, event in (("views", "view"), ("purchases", "purchase")):
            for path, delim, _found, by_norm in roles[role]:
                columns = _pick(
                    by_norm,
                    {"sessionid": schema.SESSION, "userid": U, "itemid": I, "timeframe": "timeframe", "eventdate": "eventdate"},
                )
                # A copy without userId: every user is the session.
                transform = duck.transform(_diginetica_sql(event, category, join, U in columns.values()))
                yield from csv_batches(path, columns=columns, delimiter=delim, block_bytes=block_bytes, transform=transform)
    finally:
        duck.close()


READERS: list[Reader] = [
    Reader(
        "retailrocket",
        "RetailRocket events.csv (timestamp ms,visitorid,event,itemid,transactionid); item_properties_part*.csv "
        "alongside add each item's latest categoryid",
        _retailrocket,
    ),
    Reader(
        "taobao",
        "Taobao/Tianchi UserBehavior.csv: no header; user,item,category,pv|buy|cart|fav,timestamp in seconds",
        _taobao,
    ),
    Reader(
        "rees46",
        "REES46 monthly files (2019-Oct.csv ...): event_time,event_type,product_id,category_id,...,user_session; "
        "remove_from_cart rows are quarantined",
        _rees46,
    ),
    *public_orders.READERS[:1],
    Reader(
        "movielens",
        "MovieLens ratings.csv, ratings.dat (::) or u.data (tabs), seconds; every rating is a purchase; "
        "movies.csv/movies.dat alongside give the first genre as category",
        _movielens,
    ),
    Reader(
        "cdnow",
        "CDNOW_master.txt: customer, YYYYMMDD, CDs, dollars (whitespace-separated); one item 'cdnow', "
        "quantity = CDs, price = dollars per CD, time = the day 00:00 UTC",
        _cdnow,
    ),
    Reader(
        "diginetica",
        "Diginetica train-item-views.csv (;-separated; also train-purchases.csv, product-categories.csv); "
        "time = eventdate + timeframe ms; anonymous users become session:<sessionId>",
        _diginetica,
    ),
    *public_orders.READERS[1:],
]

__all__ = ["READERS", "REMOVE_FROM_CART_REASON"]
