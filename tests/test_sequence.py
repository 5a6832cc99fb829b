"""The sequence model (decayrec.sequence): its arrays, that it learns what comes next and when,
save and load without pickle, the missing-extra message, and its place in the main model."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from decayrec.errors import InputError
from decayrec.recommend.interactions import interactions
from decayrec.sequence import SequenceConfig, SequenceRecommender
from decayrec.sequence.data import FIRST, gap_bucket, last_events, training_rows

NOW = datetime(2024, 6, 1, tzinfo=UTC)
END = NOW - timedelta(days=1)
N_ITEMS = 20
SHORT, LONG = 5 / 1440, 10.0  # days: 5 minutes, 10 days
# Small and quick for tests; the defaults are for shops.
TINY = {"dim": 32, "blocks": 1, "max_len": 20, "dropout": 0.0, "max_epochs": 40, "patience": 4, "budget_seconds": 60.0}


def _chain_log(users: int = 150, steps: int = 30, seed: int = 0) -> pa.Table:
    """After item x a user does x + 1 when they come back within minutes, x + 7 when they come back days later.

    Every user's last event is at :data:`END`, so one "now" is the same gap after it for all.
    """
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"user_id": [], "item_id": [], "event": [], "timestamp": [], "category_id": []}
    for u in range(users):
        short = rng.random(steps - 1) < 0.5
        gaps = np.where(short, SHORT, LONG) * rng.uniform(0.8, 1.2, steps - 1)
        items = np.cumsum(np.r_[rng.integers(N_ITEMS), np.where(short, 1, 7)]) % N_ITEMS
        ago = np.r_[np.cumsum(gaps[::-1])[::-1], 0.0]
        for x, a in zip(items.tolist(), ago.tolist()):
            rows["user_id"].append(f"u{u:03d}")
            rows["item_id"].append(f"i{x:02d}")
            rows["event"].append("view")
            rows["timestamp"].append(END - timedelta(days=a))
            rows["category_id"].append(f"c{x % 4}")
    return pa.table(rows)


@pytest.fixture(scope="module")
def chain() -> tuple[pa.Table, SequenceRecommender, datetime]:
    events = _chain_log()
    fit_at = max(events["timestamp"].to_pylist()) + timedelta(seconds=1)
    return events, SequenceRecommender(**TINY).fit(events, fit_at), fit_at


def _last_items(events: pa.Table) -> tuple[dict[str, int], dict[str, datetime]]:
    item, when = {}, {}
    for u, i, t in zip(events["user_id"].to_pylist(), events["item_id"].to_pylist(), events["timestamp"].to_pylist()):
        if u not in when or t >= when[u]:
            item[u], when[u] = int(i[1:]), t
    return item, when


# -- arrays ------------------------------------------------------------------------------------
def test_gap_buckets_grow_with_the_gap_in_log2_minutes():
    b = gap_bucket(np.array([0.0, 1 / 1440, 3 / 1440, 1.0, 365.0, 1e6]), 24)
    assert b.tolist() == [2, 3, 4, 12, 21, 23]  # 0 min; 1 min; 3 min; 1,440 min; a year; capped
    assert (np.diff(gap_bucket(np.linspace(0, 100, 500), 24)) >= 0).all()


def test_training_rows_pair_each_event_with_its_predecessor_and_segment_long_users():
    user = np.array([0, 0, 0, 0, 1, 1])
    item = np.array([1, 2, 3, 4, 5, 6])
    time = np.array([0.0, 1.0, 2.0, 3.0, 0.0, 1 / 1440])
    rows = training_rows(user, item, np.ones(6, dtype=np.int64), time, max_len=2, n_buckets=24)
    b = rows.batch
    # user 0: targets 2, 3, 4 -> segments [3, 4] (latest) and [_, 2]; user 1: [_, 6].
    assert rows.user.tolist() == [0, 0, 1]
    assert b.target.tolist() == [[3, 4], [0, 2], [0, 6]]
    assert b.item.tolist() == [[2, 3], [0, 1], [0, 5]]
    assert b.gap[1, 1] == FIRST and b.gap[0, 0] == gap_bucket(np.array([1.0]), 24)[0]
    assert b.query[2, 1] == gap_bucket(np.array([1 / 1440]), 24)[0]  # the gap to the target
    assert np.allclose(b.qtime[0] - b.time[0], [1.0, 1.0])


def test_last_events_are_left_padded_and_queried_at_now():
    user = np.array([0, 0, 0, 1])
    item = np.array([1, 2, 3, 4])
    time = np.array([-3.0, -2.0, -1.0, -5.0])
    b = last_events(user, item, np.ones(4, dtype=np.int64), time, np.array([1, 0, 7]), 0.0, max_len=2, n_buckets=24)
    assert b.item.tolist() == [[0, 4], [2, 3], [0, 0]]
    assert b.query[:, -1].tolist() == [gap_bucket(np.array([5.0]), 24)[0], gap_bucket(np.array([1.0]), 24)[0], 23]
    assert b.time[1].tolist() == [-2.0, -1.0]


# -- learning ------------------------------------------------------------------------------------
def test_it_learns_what_comes_next_and_that_it_depends_on_how_long_ago(chain):
    events, model, _ = chain
    last, _ = _last_items(events)
    users = sorted(last)
    soon = model.recommend(users, 1, END + timedelta(minutes=5))
    later = model.recommend(users, 1, END + timedelta(days=10))
    soon_item = dict(zip(soon["user_id"].to_pylist(), soon["item_id"].to_pylist()))
    later_item = dict(zip(later["user_id"].to_pylist(), later["item_id"].to_pylist()))
    hit_soon = np.mean([soon_item[u] == f"i{(last[u] + 1) % N_ITEMS:02d}" for u in users])
    hit_later = np.mean([later_item[u] == f"i{(last[u] + 7) % N_ITEMS:02d}" for u in users])
    assert hit_soon >= 0.8, hit_soon
    assert hit_later >= 0.8, hit_later
    assert model.report_["best_epoch"] >= 1 and model.report_["loss"] == "full softmax"


def test_sampled_softmax_trains_too():
    events = _chain_log(users=200, steps=20, seed=1)
    at = max(events["timestamp"].to_pylist()) + timedelta(days=10)
    model = SequenceRecommender(**(TINY | {"full_softmax_items": 5, "negatives": 15})).fit(events, at)
    assert model.report_["loss"].startswith("sampled softmax")
    last, _ = _last_items(events)
    recs = model.recommend(sorted(last), 1, at)
    top = dict(zip(recs["user_id"].to_pylist(), recs["item_id"].to_pylist()))
    assert np.mean([top[u] == f"i{(last[u] + 7) % N_ITEMS:02d}" for u in last]) >= 0.6


def test_the_contract_reasons_cold_start_and_exclude_seen(chain):
    events, model, fit_at = chain
    recs = model.recommend(["u000", "nobody"], 5, fit_at)
    assert recs.column_names == ["user_id", "item_id", "rank", "score", "reason"]
    mine = recs.filter(pa.compute.equal(recs["user_id"], "u000"))
    assert mine["rank"].to_pylist() == [1, 2, 3, 4, 5]
    assert mine["reason"][0].as_py().startswith("fits the sequence of what you did lately (last: i")
    cold = recs.filter(pa.compute.equal(recs["user_id"], "nobody"))
    assert cold.num_rows == 5 and cold["reason"][0].as_py().startswith("new visitor")
    few = pa.table(
        {
            "user_id": ["few", "few"],
            "item_id": ["i03", "i04"],
            "event": ["view", "view"],
            "timestamp": [END - timedelta(minutes=10), END],
            "category_id": ["c3", "c0"],
        }
    )
    both = pa.concat_tables([events, few])
    kept = model.at(interactions(both, fit_at, None), exclude_seen=False)
    left_out = model.at(kept.ix_, exclude_seen=True)
    assert {"i03", "i04"} <= set(kept.recommend(["few"], 20, fit_at)["item_id"].to_pylist())
    got = left_out.recommend(["few"], 5, fit_at)["item_id"].to_pylist()
    assert len(got) == 5 and not {"i03", "i04"} & set(got)
    assert got[0] == "i05"  # a 5-minute gap after i04: i04 + 1


def test_fitting_is_reproducible():
    events = _chain_log(users=40, steps=12, seed=2)
    at = max(events["timestamp"].to_pylist()) + timedelta(hours=1)
    a = SequenceRecommender(**(TINY | {"max_epochs": 3})).fit(events, at).recommend(["u001", "u002"], 5, at)
    b = SequenceRecommender(**(TINY | {"max_epochs": 3})).fit(events, at).recommend(["u001", "u002"], 5, at)
    assert a.equals(b)


def test_it_reads_nothing_after_now(chain):
    events, _, fit_at = chain
    cut = fit_at - timedelta(days=100)
    before = SequenceRecommender(**(TINY | {"max_epochs": 2})).fit(events, cut)
    poisoned = pa.concat_tables([events, events.slice(0, 50).set_column(3, "timestamp", pa.array([fit_at] * 50))])
    again = SequenceRecommender(**(TINY | {"max_epochs": 2})).fit(poisoned, cut)
    assert before.recommend(["u001"], 5, cut).equals(again.recommend(["u001"], 5, cut))
    with pytest.raises(InputError, match="would see the future"):
        before.at(interactions(events, cut - timedelta(days=1), None))


def test_interest_vectors_move_for_a_user_whose_taste_changed(chain):
    events, model, fit_at = chain
    # u000 keeps its habit; "switcher" does items 0-4 for a month, then 10-14.
    t0 = fit_at - timedelta(days=60)
    extra = {
        "user_id": ["switcher"] * 40,
        "item_id": [f"i{(i % 5) + (10 if i >= 20 else 0):02d}" for i in range(40)],
        "event": ["view"] * 40,
        "timestamp": [t0 + timedelta(days=1.5 * i) for i in range(40)],
        "category_id": ["c0"] * 40,
    }
    both = pa.concat_tables([events, pa.table(extra)])
    vec = model.vectors(both, ["u000", "switcher", "nobody"], fit_at)
    assert vec.shape == (3, TINY["dim"]) and not vec[2].any()
    drift = model.drift(both, ["switcher", "nobody"], fit_at, lag_days=30)
    assert drift[0] > 0.05 and np.isnan(drift[1])


# -- save and load ------------------------------------------------------------------------------------
def test_save_and_load_give_the_same_lists_without_pickle(chain, tmp_path):
    events, model, fit_at = chain
    folder = model.save(tmp_path / "seq")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]
    assert b"pickle" not in (folder / "weights.safetensors").read_bytes()[:2000]
    loaded = SequenceRecommender.load(folder).attach(events, fit_at)
    users = ["u000", "u050", "nobody"]
    assert loaded.recommend(users, 10, fit_at).equals(model.recommend(users, 10, fit_at))
    doc = json.loads((folder / "model.json").read_text())
    doc["version"] = 99
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="format version 99"):
        SequenceRecommender.load(folder)
    with pytest.raises(InputError, match="cannot read a sequence model"):
        SequenceRecommender.load(tmp_path / "missing")


def test_bad_settings_get_one_clear_line():
    with pytest.raises(InputError, match="dim \\(30\\) must be a multiple of heads \\(4\\)"):
        SequenceConfig(dim=30, heads=4)
    with pytest.raises(InputError, match="bad settings for the sequence model"):
        SequenceRecommender(layers=3)
    with pytest.raises(InputError, match="at least 2 events"):
        SequenceRecommender().fit(_chain_log(users=1, steps=1), NOW)


# -- without torch --------------------------------------------------------------------------------
def test_without_torch_the_rest_works_and_the_model_names_the_extra(tmp_path):
    events = tmp_path / "e.csv"
    events.write_text("user_id,item_id,event,timestamp\nu1,i1,view,2024-01-01\nu1,i2,view,2024-01-02\n")
    users = tmp_path / "users.txt"
    users.write_text("u1\n")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import decayrec.sequence\n"
        "from decayrec.recommend.autoconfig import _available_sources\n"
        "assert 'sequence' not in _available_sources(), _available_sources()\n"
        "from decayrec.cli import main\n"
        f"sys.argv = ['decayrec', 'recommend', '--events', {str(events)!r}, '--users', {str(users)!r}, "
        f"'--model', 'sequence', '--out', {str(tmp_path / 'r.csv')!r}]\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'decayrec[torch]'" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


# -- in the main model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_main_model_offers_the_sequence_source_trained_before_its_search_windows():
    from decayrec.recommend.ranker import DecayRanker
    from decayrec.simulate import SimConfig, simulate

    events = simulate(SimConfig(n_users=300, n_items=300, n_categories=6, days=60.0, seed=3)).events
    now = max(events["timestamp"].to_pylist()) + timedelta(seconds=1)
    quick = TINY | {"max_epochs": 4}
    # settings this test does not check are given, so the search only scores the single
    # sources and eliminates among them (the part that involves the sequence source)
    given = {"train_windows": 1, "label_days": 7.0, "n_per_source": 20, "num_leaves": 7, "n_estimators": 60}
    ranker = DecayRanker(use_sequence=True, sequence_params=quick, budget_seconds=120, **given).fit(events, now)
    card = ranker.card()
    nets = card["sequence_networks"]
    first_validation = min(datetime.fromisoformat(c) for c in card["validation"]["cutoffs"])
    # The search's network never saw a validation window, nor the label window just before it.
    assert nets and datetime.fromisoformat(nets[0]["trained_at"]) <= first_validation - timedelta(days=card["horizon_days"])
    tried = [t for t in card["tried"] if t["step"] == "sequence"]
    assert len(tried) == 1 and tried[0]["score"] is not None  # scored as a single source: part of the floor
    if "sequence" in card["ranker_settings"]["sources"] and card["served"] == "ranker":
        assert nets[-1]["trained_at"] == card["fitted_at"]  # refitted at the fit time for serving
    without = DecayRanker(budget_seconds=120, **given).fit(events, now).card()  # the default leaves it out
    assert without["sequence_networks"] == [] and "sequence" not in without["ranker_settings"]["sources"]
    assert not [t for t in without["tried"] if t["step"] == "sequence"]


def test_a_cutoff_before_every_network_gets_a_silent_source(chain):
    from decayrec.recommend.sequence_source import SequenceSources, Silent

    events, _, fit_at = chain
    sources = SequenceSources(events, TINY | {"max_epochs": 1}, log=lambda line: None)
    assert sources.fit(fit_at - timedelta(days=2))
    early = sources.view(interactions(events, fit_at - timedelta(days=3), None))
    assert isinstance(early, Silent) and early.propose(np.arange(3), 5)[0].size == 0
    late = sources.view(interactions(events, fit_at, None))
    row, _item, prob = late.propose(np.arange(3), 5)
    assert row.tolist() == [0] * 5 + [1] * 5 + [2] * 5 and (prob > 0).all()
    assert not sources.fit(datetime(2000, 1, 1, tzinfo=UTC))  # nothing to train on: said, not raised


@pytest.mark.slow
def test_the_cli_saves_a_sequence_model_and_profile_shows_its_drift(tmp_path):
    import csv

    events = _chain_log(users=60, steps=15, seed=4)
    path = tmp_path / "events.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(events.column_names)
        for row in zip(*(events[c].to_pylist() for c in events.column_names)):
            w.writerow([v.isoformat() if isinstance(v, datetime) else v for v in row])
    users = tmp_path / "users.txt"
    users.write_text("u001\nnobody\n")
    bin_ = str(Path(sys.executable).with_name("decayrec"))
    rec = subprocess.run(
        [bin_, "recommend", "--events", str(path), "--users", str(users), "--model", "sequence", "--budget-seconds", "20",
         "--save-model", str(tmp_path / "seq"), "--out", str(tmp_path / "r.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    assert (tmp_path / "seq" / "weights.safetensors").exists()
    prof = subprocess.run(
        [bin_, "profile", "--events", str(path), "--user", "u001", "--sequence-model", str(tmp_path / "seq"),
         "--out", str(tmp_path / "p.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert prof.returncode == 0, prof.stderr
    assert "interest-vector drift over 30 days (sequence model)" in prof.stdout
    drift = json.loads((tmp_path / "p.json").read_text())["sequence_drift"]
    assert drift is not None and 0.0 <= drift <= 2.0
    wrong = subprocess.run(
        [bin_, "recommend", "--events", str(path), "--users", str(users), "--model", "repeat", "--save-model",
         str(tmp_path / "x"), "--out", str(tmp_path / "r2.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 2 and "--save-model applies to --model sequence" in wrong.stderr
    onto_input = subprocess.run(
        [bin_, "recommend", "--events", str(path), "--users", str(users), "--model", "sequence", "--save-model",
         str(path), "--out", str(tmp_path / "r3.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert onto_input.returncode == 2 and "is a file" in onto_input.stderr and "Traceback" not in onto_input.stderr
