"""Profiles: hand-computed S, ranking, fading, peaks, drift, as-of, all-users consistency, the plot."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from decayrec.decay.model import DecayModel, HalfLife
from decayrec.decay.profile import build_profile, build_profiles, curve_data, curves, interest_table
from decayrec.decay.strength import StrengthModel
from decayrec.errors import InputError, MissingExtraError
from decayrec.simulate import SimConfig, simulate

NOW = datetime(2024, 3, 1, tzinfo=UTC)
W = {"view": 1.0, "click": 1.5, "cart": 3.0, "fav": 3.0, "purchase": 5.0}
HALF = {"A": 10.0, "B": 5.0, "C": 2.0, "D": 1.0, "E": 1.0}
# A known strength map: 0 at S <= 0.1, 0.1 at S = 1, 0.9 at S >= 10; S* = 0.55 at 0.05.
MAP = {"thresholds": [0.1, 1.0, 10.0], "probabilities": [0.0, 0.1, 0.9]}
S_STAR = 0.55


def make_decay(by_category: dict[str, float] = HALF, global_days: float = 4.0) -> DecayModel:
    def hl(d: float) -> HalfLife:
        return HalfLife(d, d / 2, d * 2, d, 100, 100)

    return DecayModel(
        global_half_life=hl(global_days),
        by_category={c: hl(d) for c, d in by_category.items()},
        by_event={},
        weights=dict(W),
        alpha_by_category={},
        alpha_global=0.0,
        point_events=("view", "click"),
        fitted_at=NOW,
    )


def known_strength(level: str = "category") -> StrengthModel:
    doc = {
        "format": "decayrec.strength",
        "version": 1,
        "params": {"horizon_days": 7.0, "n_anchors": 4, "faded_threshold": 0.05, "level": level},
        **MAP,
    }
    return StrengthModel.from_json_dict(doc)


def table(rows: list[tuple[str, str, str, float, str | None]], now: datetime = NOW) -> pa.Table:
    """Events as (user, item, event, days relative to now, category)."""
    u, i, e, d, c = zip(*rows)
    ts = [now + timedelta(days=x) for x in d]
    return pa.table(
        {
            "user_id": list(u),
            "item_id": list(i),
            "event": list(e),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "category_id": pa.array(c, pa.string()),
        }
    )


ROWS = [
    ("u1", "a2", "click", -20.0, "A"),
    ("u1", "a1", "purchase", -10.0, "A"),
    ("u1", "a1", "view", -2.0, "A"),
    ("u1", "b1", "view", -6.0, "B"),
    ("u1", "b1", "cart", -5.0, "B"),
    ("u1", "c1", "view", -40.0, "C"),
    ("u1", "z1", "view", -1.0, None),
    ("u1", "a1", "purchase", 1.0, "A"),  # after now: ignored everywhere
    ("u2", "a1", "view", -3.0, "A"),
    ("u2", "c1", "fav", -1.0, "C"),
]


@pytest.fixture
def profile():
    return build_profile(table(ROWS), "u1", make_decay(), known_strength(), known_strength("item"), NOW)


def s_of(terms: list[tuple[float, float]], h: float) -> float:
    return sum(w * 2.0 ** (-age / h) for w, age in terms)


# -- values, ranking, fading --------------------------------------------------------------------
def test_interest_values_equal_hand_computation(profile):
    cats = {i.key: i for i in profile.categories.live + profile.categories.faded}
    assert cats["A"].interest == pytest.approx(s_of([(1.5, 20), (5, 10), (1, 2)], 10), rel=1e-12)
    assert cats["B"].interest == pytest.approx(s_of([(1, 6), (3, 5)], 5), rel=1e-12)
    assert cats["C"].interest == pytest.approx(2.0**-20, rel=1e-12)
    items = {i.key: i for i in profile.items.live + profile.items.faded}
    assert items["a1"].interest == pytest.approx(s_of([(5, 10), (1, 2)], 10), rel=1e-12)
    assert items["z1"].interest == pytest.approx(2.0 ** (-1 / 4), rel=1e-12)  # no category: pooled h = 4
    assert items["z1"].category is None and items["a1"].category == "A"
    assert items["a1"].half_life_days == 10.0 and cats["B"].half_life_days == 5.0


def test_a_users_multiplier_stretches_their_half_lives_and_keeps_the_excitation():
    """With FitConfig(per_user=True) a user forgets r times slower: half-lives times r, weights over r."""
    from dataclasses import replace

    decay = replace(make_decay(), user_scale={"u1": 2.0, "u2": 0.5}, user_scale_log_sd=0.5)
    mine = build_profile(table(ROWS), "u1", decay, known_strength(), known_strength("item"), NOW)
    cats = {i.key: i for i in mine.categories.live + mine.categories.faded}
    assert cats["A"].half_life_days == 20.0 and cats["B"].half_life_days == 10.0
    assert cats["A"].interest == pytest.approx(s_of([(1.5, 20), (5, 10), (1, 2)], 20) / 2.0, rel=1e-12)
    items = {i.key: i for i in mine.items.live + mine.items.faded}
    assert items["z1"].interest == pytest.approx(2.0 ** (-1 / 8) / 2.0, rel=1e-12)  # pooled h 4, times 2
    cd = curve_data(table(ROWS), "u1", decay, NOW, ["A", "never"], n_points=5)
    assert cd.half_lives.tolist() == [20.0, 8.0]
    other = build_profile(table(ROWS), "u1", decay.without_user("u1"), known_strength(), known_strength("item"), NOW)
    assert {i.key: i.half_life_days for i in other.categories.live}["A"] == 10.0


def test_live_sorted_by_strength_faded_listed_apart(profile):
    cats = profile.categories
    assert [i.key for i in cats.live] == ["A", "B"] and [i.key for i in cats.faded] == ["C"]
    assert cats.n_live == 2 and cats.n_faded == 1
    assert cats.live[0].strength > cats.live[1].strength > 0.05
    assert cats.faded[0].faded and cats.faded[0].strength == 0.0
    items = profile.items
    strengths = [i.strength for i in items.live]
    assert strengths == sorted(strengths, reverse=True)
    assert {i.key for i in items.live} | {i.key for i in items.faded} == {"a1", "a2", "b1", "c1", "z1"}
    assert all(i.strength < 0.05 for i in items.faded) and all(i.strength >= 0.05 for i in items.live)


def test_time_to_fade_is_consistent_with_the_map(profile):
    strength = known_strength()
    for it in profile.categories.live:
        expected = it.half_life_days * math.log2(it.interest / S_STAR)
        assert it.time_to_fade_days == pytest.approx(expected, rel=1e-12)
        later = it.interest * 2.0 ** (-it.time_to_fade_days / it.half_life_days)
        assert strength.predict(later) == pytest.approx(0.05, abs=1e-12)
        assert it.fades_at == NOW + timedelta(days=it.time_to_fade_days)
    faded = profile.categories.faded[0]
    assert faded.time_to_fade_days == 0.0 and faded.fades_at is None


def test_peak_counts_and_last_event(profile):
    a = profile.categories.live[0]
    assert a.key == "A"
    # S after each A event: 1.5; 1.5/2 + 5 = 5.75; 5.75 * 2**-0.8 + 1 = 4.30: the purchase is the peak.
    assert a.peak_at == NOW - timedelta(days=10)
    assert a.peak_interest == pytest.approx(5.75, rel=1e-12)
    assert a.last_event == NOW - timedelta(days=2)
    assert a.events == {"view": 1, "click": 1, "cart": 0, "fav": 0, "purchase": 1}
    b = profile.categories.live[1]
    assert b.peak_at == NOW - timedelta(days=5) and b.peak_interest == pytest.approx(2.0**-0.2 + 3)
    assert profile.n_events == 7 and profile.last_event == NOW - timedelta(days=1)
    assert profile.first_event == NOW - timedelta(days=40)


def test_events_after_now_are_ignored():
    decay, sc, si = make_decay(), known_strength(), known_strength("item")
    base = build_profile(table(ROWS), "u1", decay, sc, si, NOW).to_json_dict()
    more = ROWS + [("u1", "b9", "purchase", 0.5, "B"), ("u1", "c1", "cart", 3.0, "C")]
    assert build_profile(table(more), "u1", decay, sc, si, NOW).to_json_dict() == base
    # Naive timestamps (the store's) are UTC: the same profile.
    naive = table(ROWS)
    naive = naive.set_column(3, "timestamp", naive.column("timestamp").cast(pa.timestamp("us")))
    assert build_profile(naive, "u1", decay, sc, si, NOW.replace(tzinfo=None)).to_json_dict() == base


def test_profile_json_is_plain(profile):
    doc = json.loads(json.dumps(profile.to_json_dict(), allow_nan=False))
    assert doc["at"] == "2024-03-01T00:00:00Z"
    assert doc["categories"]["live"][0]["key"] == "A"
    assert doc["categories"]["faded"][0]["fades_at"] is None
    assert doc["categories"]["fade_level"] == pytest.approx(S_STAR)


def test_unknown_user_and_user_without_past_events_get_clear_errors():
    events = table(ROWS)
    args = (make_decay(), known_strength(), known_strength("item"))
    with pytest.raises(InputError, match=r"user nobody has no events at or before 2024-03-01T00:00:00Z; check the id"):
        build_profile(events, "nobody", *args, NOW)
    with pytest.raises(InputError, match=r"user u1 has no events at or before .*first event, 2024-01-21"):
        build_profile(events, "u1", *args, NOW - timedelta(days=60))


# -- drift -------------------------------------------------------------------------------------------
def test_drift_zero_when_interests_unchanged():
    # Same half-life (D, E) and all events before now - 30 d: S now is S then scaled by 2**-t/h.
    rows = [("u", "d", "view", -50.0, "D"), ("u", "e", "purchase", -45.0, "E"), ("u", "d", "cart", -35.0, "D")]
    p = build_profile(table(rows), "u", make_decay(), known_strength(), known_strength("item"), NOW)
    assert p.drift == pytest.approx(0.0, abs=1e-12)
    # Events keep the same mix throughout: drift stays 0 even with recent events.
    rows = [(u, i, "view", d, c) for d in (-40.0, -20.0, -1.0) for (u, i, c) in (("u", "d", "D"), ("u", "e", "E"))]
    p = build_profile(table(rows), "u", make_decay(), known_strength(), known_strength("item"), NOW)
    assert p.drift == pytest.approx(0.0, abs=1e-12)


def test_drift_one_when_the_user_moved_to_disjoint_categories():
    rows = [("u", "d", "view", -60.0, "D"), ("u", "d", "purchase", -50.0, "D"), ("u", "e", "view", -5.0, "E")]
    p = build_profile(table(rows), "u", make_decay(), known_strength(), known_strength("item"), NOW)
    assert p.drift == pytest.approx(1.0, abs=1e-9)  # D's share now is 2**-50 / 2**-5: gone


def test_drift_is_none_without_history_before_the_window():
    rows = [("u", "d", "view", -5.0, "D")]
    p = build_profile(table(rows), "u", make_decay(), known_strength(), known_strength("item"), NOW)
    assert p.drift is None and p.to_json_dict()["drift"] is None


# -- all users at once --------------------------------------------------------------------------------
@pytest.mark.parametrize("per_user", [False, True])
def test_build_profiles_agrees_with_per_user_profiles(per_user):
    from dataclasses import replace

    sim = simulate(SimConfig(n_users=60, n_items=80, n_categories=8, days=90, seed=7))
    decay = make_decay(sim.truth["half_life_days"]["by_category"], global_days=10.0)
    if per_user:  # users forget 1/2 .. 2 times as fast; the batch and one-user paths must agree
        users = sorted(set(sim.events["user_id"].to_pylist()))
        decay = replace(decay, user_scale={u: 2.0 ** ((i % 5 - 2) / 2) for i, u in enumerate(users)}, user_scale_log_sd=0.5)
    now = datetime(2024, 3, 15, tzinfo=UTC)
    sc = StrengthModel(n_anchors=3).fit(sim.events, decay, now)
    si = StrengthModel(n_anchors=3, level="item").fit(sim.events, decay, now)
    summary = build_profiles(sim.events, decay, sc, now, drift_days=21.0).to_pylist()
    assert summary and [r["user_id"] for r in summary] == sorted(r["user_id"] for r in summary)
    for row in summary[:25]:
        p = build_profile(sim.events, row["user_id"], decay, sc, si, now, drift_days=21.0, top=100)
        cats = p.categories
        assert (row["n_live"], row["n_faded"]) == (cats.n_live, cats.n_faded)
        if p.drift is None:
            assert row["drift"] is None
        else:
            assert row["drift"] == pytest.approx(p.drift, abs=1e-12)
        strongest = max(cats.live + cats.faded, key=lambda i: i.interest)
        assert row["top_category"] == strongest.key
        assert row["top_strength"] == pytest.approx(strongest.strength)
    long = interest_table(sim.events, decay, now, "item", si)
    assert long.column_names[:2] == ["user_id", "item_id"] and long.num_rows > 0
    first = long.slice(0, 1).to_pylist()[0]
    p = build_profile(sim.events, first["user_id"], decay, sc, si, now, top=1000)
    match = next(i for i in p.items.live + p.items.faded if i.key == first["item_id"])
    assert first["interest"] == pytest.approx(match.interest, rel=1e-12)
    assert first["strength"] == pytest.approx(match.strength) and first["faded"] == match.faded
    assert first["half_life_days"] == pytest.approx(match.half_life_days, rel=1e-12)
    if per_user:
        expected = sim.truth["half_life_days"]["by_category"][match.category] * decay.scale_for(first["user_id"])
        assert match.half_life_days == pytest.approx(expected, rel=1e-12)


def test_build_profiles_keeps_users_without_categories():
    rows = ROWS + [("u3", "z1", "view", -2.0, None)]
    out = build_profiles(table(rows), make_decay(), known_strength(), NOW).to_pylist()
    u3 = next(r for r in out if r["user_id"] == "u3")
    assert u3 == {"user_id": "u3", "drift": None, "n_live": 0, "n_faded": 0, "top_category": None, "top_strength": None}
    u1 = next(r for r in out if r["user_id"] == "u1")
    assert (u1["n_live"], u1["n_faded"], u1["top_category"]) == (2, 1, "A")


# -- curves and the plot ----------------------------------------------------------------------------------
def test_curves_match_a_direct_sum():
    events = table(ROWS)
    times, values = curves(events, "u1", make_decay(), NOW, ["A", "B", "nope"], n_points=50, days_back=30)
    assert times.dtype == np.dtype("datetime64[us]") and values.shape == (3, 50)
    assert times[-1] == np.datetime64("2024-03-01T00:00:00", "us")
    days = (times - np.datetime64("2024-03-01T00:00:00", "us")) / np.timedelta64(1, "D")
    for row, cat in zip(values, ["A", "B"]):
        ev = [(W[e], d) for (u, _, e, d, c) in ROWS if u == "u1" and c == cat and d <= 0]
        expected = [sum(w * 2 ** (-(t - d) / HALF[cat]) for w, d in ev if d <= t) for t in days]
        np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-300)
    assert np.all(values[2] == 0)
    data = curve_data(events, "u1", make_decay(), NOW, ["A"])
    np.testing.assert_allclose(data.event_values[0], [1.5, 5.75, 5.75 * 2**-0.8 + 1])
    np.testing.assert_allclose(data.event_before[0], [0.0, 0.75, 5.75 * 2**-0.8])


def test_plot_writes_a_png(tmp_path, profile):
    pytest.importorskip("matplotlib")
    from decayrec.plot import plot_profile

    for level in ("category", "item"):
        out = plot_profile(profile, table(ROWS), make_decay(), tmp_path / f"{level}.png", level=level)
        data = out.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_without_matplotlib_names_the_extra(tmp_path, profile, monkeypatch):
    from decayrec.plot import plot_profile

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(MissingExtraError, match=r"decayrec\[plot\]"):
        plot_profile(profile, table(ROWS), make_decay(), tmp_path / "x.png")
