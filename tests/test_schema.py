from datetime import UTC, datetime

import pytest

from decayrec import schema
from decayrec.errors import InputError
from decayrec.timeparse import iso, parse_time


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("view", "view"),
        (" PV ", "view"),
        ("addtocart", "cart"),
        ("transaction", "purchase"),
        ("buy", "purchase"),
        ("order", "purchase"),
        ("favorite", "fav"),
        ("like", "fav"),
        ("Click", "click"),
        ("teleport", None),
        ("", None),
    ],
)
def test_event_aliases(name, expected):
    assert schema.canonical_event(name) == expected


@pytest.mark.parametrize(
    ("value", "unit"),
    [(1511596800, "s"), (1511596800123, "ms"), (1511596800123456, "us"), (946684800, "s"), (99_999_999_999, "s")],
)
def test_detect_epoch_unit(value, unit):
    assert schema.detect_epoch_unit(value) == unit


UTC = UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2017-11-25T08:00:00Z", datetime(2017, 11, 25, 8, tzinfo=UTC)),
        ("2017-11-25T10:00:00+02:00", datetime(2017, 11, 25, 8, tzinfo=UTC)),
        ("2017-11-25 08:00:00", datetime(2017, 11, 25, 8, tzinfo=UTC)),
        ("2017-11-25", datetime(2017, 11, 25, tzinfo=UTC)),
        ("1511596800", datetime(2017, 11, 25, 8, tzinfo=UTC)),
        ("1511596800000", datetime(2017, 11, 25, 8, tzinfo=UTC)),
        ("2019-10-01 00:00:00 UTC", datetime(2019, 10, 1, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2017-13-01", "5", ""])
def test_parse_time_rejects_with_a_fix(text):
    with pytest.raises(InputError) as info:
        parse_time(text, option="--cutoff")
    assert "--cutoff" in str(info.value) and "\n" not in str(info.value)


def test_iso_drops_zero_microseconds():
    assert iso(datetime(2017, 11, 25, 8)) == "2017-11-25T08:00:00Z"
    assert iso(datetime(2017, 11, 25, 8, 0, 0, 5000)) == "2017-11-25T08:00:00.005000Z"
