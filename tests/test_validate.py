"""The schema boundary, row by row: typed values and quarantine reasons."""

from datetime import datetime

import duckdb
import pyarrow as pa
import pytest

from decayrec.io.validate import EVENT_SCHEMA, validate_batch


def raw(**columns):
    n = len(next(iter(columns.values())))
    columns.setdefault("_line", list(range(2, n + 2)))
    return pa.table({k: pa.array(v, pa.int64() if k == "_line" else pa.string()) for k, v in columns.items()})


def one(user="u", item="i", event="view", ts="2017-11-25T08:00:00Z", unit="s", **extra):
    table = raw(user_id=[user], item_id=[item], event=[event], timestamp=[ts], **{k: [v] for k, v in extra.items()})
    return validate_batch(duckdb.connect(), table, unit)


@pytest.mark.parametrize(
    ("ts", "unit", "expected"),
    [
        ("2017-11-25T08:00:00Z", "s", datetime(2017, 11, 25, 8)),
        ("2017-11-25T09:30:00+01:30", "s", datetime(2017, 11, 25, 8)),
        ("2017-11-25T03:00:00-05:00", "s", datetime(2017, 11, 25, 8)),
        ("2017-11-25 08:00:00", "s", datetime(2017, 11, 25, 8)),
        ("2017-11-25", "s", datetime(2017, 11, 25)),
        ("2014-04-01T01:02:21.719Z", "s", datetime(2014, 4, 1, 1, 2, 21, 719000)),
        ("1511596800", "s", datetime(2017, 11, 25, 8)),
        ("1511596800.5", "s", datetime(2017, 11, 25, 8, 0, 0, 500000)),
        ("1511596800123", "ms", datetime(2017, 11, 25, 8, 0, 0, 123000)),
        ("1511596800123456", "us", datetime(2017, 11, 25, 8, 0, 0, 123456)),
        ("  2017-11-25T08:00:00Z ", "s", datetime(2017, 11, 25, 8)),
    ],
)
def test_timestamps_parse_to_utc(ts, unit, expected):
    result = one(ts=ts, unit=unit)
    assert result.quarantined.num_rows == 0
    assert result.events["timestamp"].to_pylist() == [expected]


def test_typed_columns_and_trimming():
    result = one(user=" 007 ", item="1e3", event=" AddToCart ", category_id=" c1 ", price=" 9.50", quantity="2", session_id="s")
    assert result.events.select(EVENT_SCHEMA.names).schema == EVENT_SCHEMA
    row = result.events.to_pylist()[0]
    assert row["user_id"] == "007" and row["item_id"] == "1e3"  # ids stay strings, never numbers
    assert row["event"] == "cart" and row["category_id"] == "c1"
    assert row["price"] == 9.5 and row["quantity"] == 2.0 and row["session_id"] == "s"


def test_empty_optional_fields_are_null():
    row = one(category_id="", price="", quantity=" ", session_id="").events.to_pylist()[0]
    assert row["category_id"] is None and row["price"] is None and row["quantity"] is None and row["session_id"] is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"user": ""}, "missing user_id"),
        ({"user": "   "}, "missing user_id"),
        ({"item": ""}, "missing item_id"),
        ({"event": ""}, "missing event"),
        ({"event": "teleport"}, "unknown event type: 'teleport'"),
        ({"ts": ""}, "missing timestamp"),
        ({"ts": "yesterday"}, "unparseable timestamp: 'yesterday'"),
        ({"ts": "2017-02-30T00:00:00Z"}, "unparseable timestamp"),
        ({"ts": "0"}, "timestamp out of range: '0' reads as 1970-01-01"),
        ({"ts": "1511596800123", "unit": "s"}, "timestamp out of range"),
        ({"ts": "1e30"}, "unparseable timestamp"),
        ({"ts": "2150-01-01"}, "timestamp out of range"),
        ({"price": "abc"}, "price is not a number: 'abc'"),
        ({"price": "nan"}, "price is not a number"),
        ({"price": "-3"}, "negative price"),
        ({"quantity": "two"}, "quantity is not a number"),
        ({"quantity": "-1"}, "negative quantity"),
    ],
)
def test_quarantine_reasons(kwargs, reason):
    result = one(**kwargs)
    assert result.events.num_rows == 0
    q = result.quarantined.to_pylist()[0]
    assert q["reason"].startswith(reason), q["reason"]
    assert q["line"] == 2


def test_quarantine_keeps_the_raw_values_as_read():
    q = one(user=" u1 ", price="abc").quarantined.to_pylist()[0]
    assert q["user_id"] == " u1 " and q["price"] == "abc" and q["timestamp"] == "2017-11-25T08:00:00Z"


def test_preset_reason_wins_and_every_row_is_accounted_for():
    table = raw(
        user_id=["a", "b", None, "d"],
        item_id=["i", "i", None, ""],
        event=["view", "view", None, "view"],
        timestamp=["2017-11-25", "2017-11-25", None, "2017-11-25"],
        _reason=[None, "order status canceled", "wrong number of fields: expected 4, found 1", None],
        _raw=[None, None, "garbage", None],
    )
    result = validate_batch(duckdb.connect(), table, "s")
    assert result.events["user_id"].to_pylist() == ["a"]
    assert result.quarantined["reason"].to_pylist() == [
        "order status canceled",
        "wrong number of fields: expected 4, found 1",
        "missing item_id",
    ]
    assert result.quarantined["line"].to_pylist() == [3, 4, 5]
    assert result.quarantined["raw"].to_pylist()[1] == "garbage"
    assert result.events.num_rows + result.quarantined.num_rows == table.num_rows
