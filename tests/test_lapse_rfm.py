"""RFM summaries: hand-computed values, the ``now`` cut-off, and a brute-force reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from decayrec.errors import InputError
from decayrec.lapse.rfm import rfm_summary

NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)


def events_table(rows: list[tuple]) -> pa.Table:
    """Canonical events from ``(user, event, time, price, quantity)`` rows."""
    user, event, time, price, quantity = zip(*rows)
    return pa.table(
        {
            "user_id": pa.array(user, pa.string()),
            "item_id": pa.array(["i1"] * len(rows), pa.string()),
            "event": pa.array(event, pa.string()),
            "timestamp": pa.array(time, pa.timestamp("us", tz="UTC")),
            "price": pa.array(price, pa.float64()),
            "quantity": pa.array(quantity, pa.float64()),
        }
    )


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, minute, second, tzinfo=UTC)


HAND = events_table(
    [
        ("b", "purchase", at(10, 23, 59, 59), 5.0, None),  # quantity missing: 1
        ("a", "view", at(1, 9), 3.0, None),
        ("c", "view", at(20), None, None),  # only after now: absent
        ("a", "purchase", at(1, 18), 10.0, 2.0),  # same day as the view: one transaction
        ("d", "view", at(14, 8), 3.0, None),  # a priced view is not spend
        ("a", "click", at(8, 10), None, None),
        ("a", "cart", at(15, 11), None, None),
        ("a", "view", at(15, 13), None, None),  # after now (12:00): ignored
        ("b", "purchase", at(11, 0, 0, 1), 7.0, 1.0),  # next UTC day: a repeat
    ]
)


def test_hand_computed_summary():
    rfm = rfm_summary(HAND, NOW, unit_days=7.0)
    assert rfm.users.to_pylist() == ["a", "b", "d"]
    # a: active Jan 1, 8, 15; b: Jan 10, 11; d: Jan 14. T runs from the first day's midnight to now.
    np.testing.assert_allclose(rfm.frequency, [2, 1, 0])
    np.testing.assert_allclose(rfm.recency, np.array([14, 1, 0]) / 7)
    np.testing.assert_allclose(rfm.T, np.array([14.5, 5.5, 1.5]) / 7)
    np.testing.assert_allclose(rfm.monetary, [20.0, 6.0, np.nan])
    np.testing.assert_array_equal(rfm.n_events, [4, 2, 1])
    for column in (rfm.frequency, rfm.recency, rfm.T, rfm.monetary):
        assert column.dtype == np.float64


def test_units_and_time_zones_of_now():
    days = rfm_summary(HAND, NOW, unit_days=1.0)
    np.testing.assert_allclose(days.T, [14.5, 5.5, 1.5])
    # The same instant in another zone, or naive (= UTC), gives the same summary.
    for now in (NOW.astimezone(timezone(timedelta(hours=5))), NOW.replace(tzinfo=None)):
        np.testing.assert_allclose(rfm_summary(HAND, now, unit_days=1.0).T, days.T)


def test_now_cuts_off_exactly():
    at_now = rfm_summary(HAND, at(15, 13), unit_days=1.0)  # a's 13:00 view now counts
    assert at_now.n_events[0] == 5
    before_all = rfm_summary(HAND, at(1), unit_days=1.0)
    assert len(before_all) == 0 and before_all.frequency.size == 0


def brute_force(rows, now, unit_days):
    """One user at a time, with Python sets: the reference the vectorised code must match."""
    out = {}
    for user in sorted({r[0] for r in rows if r[2] <= now}):
        times = [r[2] for r in rows if r[0] == user and r[2] <= now]
        days = sorted({t.date() for t in times})
        first = datetime.combine(days[0], datetime.min.time(), UTC)
        unit = timedelta(days=unit_days)
        out[user] = (len(days) - 1, (days[-1] - days[0]) / unit, (now - first) / unit)
    return out


def test_matches_brute_force_on_random_events():
    rng = np.random.default_rng(3)
    start = datetime(2023, 12, 1, tzinfo=UTC)
    rows = [
        (f"u{rng.integers(30)}", "view", start + timedelta(seconds=int(s)), None, None) for s in rng.integers(0, 60 * 86_400, 600)
    ]
    now = start + timedelta(days=45, hours=7)
    rfm = rfm_summary(events_table(rows), now, unit_days=7.0)
    ref = brute_force(rows, now, 7.0)
    assert rfm.users.to_pylist() == list(ref)
    got = np.column_stack([rfm.frequency, rfm.recency, rfm.T])
    np.testing.assert_allclose(got, np.array(list(ref.values())), rtol=1e-12)
    # The summary is consistent BG/NBD input.
    assert np.all(rfm.recency <= rfm.T) and np.all(rfm.recency[rfm.frequency == 0] == 0)


def test_a_million_events_are_all_counted():
    rng = np.random.default_rng(0)
    n = 1_000_000
    ticks = np.datetime64("2024-01-01", "us").astype(np.int64) + rng.integers(0, 90 * 86_400 * 10**6, n)
    table = pa.table(
        {
            "user_id": pa.array(rng.integers(0, 100_000, n).astype(str)),
            "event": pa.array(np.where(rng.random(n) < 0.1, "purchase", "view")),
            "timestamp": pa.array(ticks, pa.timestamp("us", tz="UTC")),
            "price": pa.array(rng.random(n) * 100),
        }
    )
    rfm = rfm_summary(table, datetime(2024, 3, 1, tzinfo=UTC))  # its speed is measured in bench/bench_lapse.py
    assert rfm.n_events.sum() == (ticks <= np.datetime64("2024-03-01", "us").astype(np.int64)).sum()


@pytest.mark.parametrize(
    "call",
    [
        lambda: rfm_summary(HAND, NOW, unit_days=0.0),
        lambda: rfm_summary(HAND.drop_columns(["timestamp"]), NOW),
        lambda: rfm_summary(HAND, "2024-01-15"),
        lambda: rfm_summary(HAND.set_column(3, "timestamp", pa.nulls(9, pa.timestamp("us", tz="UTC"))), NOW),
        lambda: rfm_summary(HAND.set_column(0, "user_id", pa.nulls(9, pa.string())), NOW),
    ],
)
def test_bad_input_raises_input_error_with_a_fix(call):
    with pytest.raises(InputError) as err:
        call()
    assert err.value.fix
