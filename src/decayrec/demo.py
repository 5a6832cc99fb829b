"""``decayrec demo``: a simulated shop, ingested into an embedded store, summarised.

Later stages (decay fit, recommendations, lapse risk, trends) add their sections here.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from decayrec.views import summary_table


def run_demo(workdir: Path, *, users: int, seed: int, console: Console, progress: Callable) -> None:
    from decayrec.ingest import ingest
    from decayrec.simulate import SimConfig, simulate
    from decayrec.store import EventStore
    from decayrec.views import print_ingest

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = SimConfig(n_users=users, seed=seed)
    sim = simulate(config)
    events_path, truth_path = sim.write(workdir)
    console.print(
        f"[bold]1. simulated a shop[/]: {sim.events.num_rows:,} events from {config.n_users:,} users over "
        f"{config.days:g} days (seed {seed}) in {time.perf_counter() - started:.1f}s -> {events_path}, truth in {truth_path}"
    )

    store_dir = workdir / "store"
    shutil.rmtree(store_dir, ignore_errors=True)  # the demo starts from an empty store every time
    with EventStore.open(store_dir, create=True) as store, progress("ingest") as bar:
        report = ingest([events_path], store, progress=bar)
    console.print(f"[bold]2. ingested into the embedded store[/] {store_dir}")
    print_ingest(report, console)

    with EventStore.open(store_dir, read_only=True) as store:
        summary = store.summary()
        events = store.scan()
    console.print(summary_table(summary))

    decay_step(events, sim.truth, workdir, console)
    evaluation_step(events, workdir, console)
    lapse_step(events, sim.truth, workdir, console)
    trends_step(events, sim.truth, workdir, console)


def evaluation_step(events, workdir: Path, console: Console) -> None:
    """Recommendations on a time split of the simulated shop: decayrec against the baselines and implicit's ALS."""
    from decayrec.evaluate import evaluate, time_split
    from decayrec.recommend.ranker import DecayRanker
    from decayrec.recommend.registry import make_model

    names = ["decayrec", "repeat", "covisit", "itemknn", "decayed_popularity", "popularity", "als"]
    split = time_split(events, None, 7.0)
    started = time.perf_counter()
    # decayrec is told the use horizon (the next 7 days) and configures itself on the weeks before the cutoff.
    models = {name: make_model(name, **({"horizon_days": 7.0} if name == "decayrec" else {})) for name in names}
    results = evaluate(models, split=split, k=20)
    results.to_json(workdir / "RESULTS.json")
    ranker = models["decayrec"]
    assert isinstance(ranker, DecayRanker)  # make_model("decayrec") builds a DecayRanker
    ranker.save_card(workdir / "CARD.json")
    console.print(
        f"[bold]5. recommendations, evaluated[/] in {time.perf_counter() - started:.0f}s: trained up to the cutoff, "
        f"scored on the next 7 days -> {workdir / 'RESULTS.json'}"
    )
    console.print(results.table())
    console.print(card_summary(ranker.card()) + f" -> {workdir / 'CARD.json'}")


def card_summary(card: dict) -> str:
    """One sentence: what decayrec's self-configuration chose and served, against its best single source."""
    floor = card.get("floor") or {}
    chosen = card["ranker_settings"]
    if card["served"] == "ranker":
        what = (
            f"serves its ranker ({', '.join(chosen['sources'])}; {chosen['train_windows']} label windows of "
            f"{chosen['label_days']:g} days; {chosen['budget']} candidates per source)"
        )
    else:
        what = f"serves its best single source, {card['served']} (the ranker did not beat it on validation)"
    score = ""
    if floor.get("best_single"):
        score = f": validation NDCG@20 {floor.get('ranker_score')} for the ranker vs {floor['single_score']} for {floor['best_single']}"
    return f"decayrec tried {len(card['tried'])} settings in {card['search_seconds']:.0f}s and {what}{score}"


def decay_step(events, truth: dict, workdir: Path, console: Console) -> None:
    """Fit half-lives on the simulated shop and compare them with the truth it was built from."""
    import numpy as np

    from decayrec.decay.config import FitConfig
    from decayrec.decay.fit import fit_decay
    from decayrec.decay.profile import build_profile
    from decayrec.decay.strength import StrengthModel
    from decayrec.timeparse import parse_time
    from decayrec.views import decay_table, profile_tables

    now = parse_time(truth["end"])
    started = time.perf_counter()
    model = fit_decay(events, now, FitConfig(fit_by_event=False))
    model.save(workdir / "DECAY.json")
    true_h = truth["half_life_days"]["by_category"]
    console.print(f"[bold]3. learned half-lives[/] in {time.perf_counter() - started:.1f}s -> {workdir / 'DECAY.json'}")
    console.print(decay_table(model, truth=true_h, top=12))
    consumable = set(truth["consumable_cycles_days"])
    errors = {c: abs(model.by_category[c].days - h) / h for c, h in true_h.items() if c in model.by_category}
    plain = [e for c, e in errors.items() if c not in consumable]
    cons = [e for c, e in errors.items() if c in consumable]
    inside = np.mean(
        [model.by_category[c].low <= h <= model.by_category[c].high for c, h in true_h.items() if c not in consumable]
    )
    console.print(
        f"fitted vs true half-life: median relative error {np.median(plain):.1%} over {len(plain)} categories "
        f"whose events follow the decay model ({inside:.0%} of their true values inside the 95% interval); "
        f"{np.median(cons):.1%} over {len(cons)} consumable categories, where scheduled re-buys add a rhythm the "
        "decay kernel does not model."
    )
    strength_cat = StrengthModel(level="category", faded_threshold=0.10).fit(events, model, now)
    strength_item = StrengthModel(level="item").fit(events, model, now)
    users = events["user_id"].value_counts().to_pylist()
    busiest = max(users, key=lambda u: u["counts"])["values"]
    console.print(
        f"[bold]4. an interest profile[/] (the busiest user; any user: decayrec profile --events {workdir / 'store'} --user ID)"
    )
    console.print(profile_tables(build_profile(events, busiest, model, strength_cat, strength_item, now, top=4)))


def lapse_step(events, truth: dict, workdir: Path, console: Console) -> None:
    """Lapse risk at the end of the log, ranked against the users who truly lapsed, and a plan."""
    import numpy as np
    import pyarrow.csv as pacsv

    from decayrec.lapse import PlanConfig, make_lapse_model, make_plan
    from decayrec.lapse.metrics import roc_auc
    from decayrec.recommend.registry import make_model
    from decayrec.timeparse import parse_time
    from decayrec.views import plan_table

    now = parse_time(truth["end"])
    started = time.perf_counter()
    scores = {}
    for name in ("decayrec", "bgnbd"):
        risk = make_lapse_model(name, 30.0).fit(events, now).predict()
        ids = risk.column("user_id").to_pylist()
        lapse = [truth["users"][u]["lapse"] for u in ids]
        lapsed = np.array([t is not None and parse_time(t) <= now for t in lapse], dtype=np.int8)
        scores[name] = (roc_auc(lapsed, 1.0 - risk.column("p_active").to_numpy()), risk)
    risk = scores["decayrec"][1]
    pacsv.write_csv(risk, workdir / "RISK.csv")
    console.print(
        f"[bold]6. lapse risk[/] (P(any event in the next 30 days)) in {time.perf_counter() - started:.1f}s -> "
        f"{workdir / 'RISK.csv'}: {lapsed.mean():.0%} of the {len(ids):,} users truly lapsed before the end (the "
        f"simulator knows); ROC-AUC of the risk ranking against them: learned {scores['decayrec'][0]:.3f}, "
        f"BG/NBD {scores['bgnbd'][0]:.3f}"
    )
    plan = make_plan(risk, events, now, recommender=make_model("repeat").fit(events, now), config=PlanConfig(k=5))
    pacsv.write_csv(plan, workdir / "PLAN.csv")
    actions = dict(zip(*np.unique(plan.column("action").to_numpy(zero_copy_only=False), return_counts=True)))
    console.print(
        f"re-engagement plan for the {plan.num_rows:,} users at risk -> {workdir / 'PLAN.csv'} ("
        + ", ".join(f"{a} {n:,}" for a, n in sorted(actions.items()))
        + "; lists from the repeat model here, the CLI's default is decayrec)"
    )
    console.print(plan_table(plan, 8))


def trends_step(events, truth: dict, workdir: Path, console: Console) -> None:
    """Rising and fading categories and items now, and the forecast's error against naive on the last week."""
    import pyarrow.csv as pacsv

    from decayrec.timeparse import parse_time
    from decayrec.trends import forecast_backtest, trends
    from decayrec.views import trends_view

    now = parse_time(truth["end"])
    started = time.perf_counter()
    for level in ("category", "item"):
        table = trends(events, now, level=level)
        pacsv.write_csv(table.replace_schema_metadata(None), workdir / f"TRENDS-{level}.csv")
        labels = table.column("trend").to_pylist()
        console.print(
            f"[bold]7. {level} trends[/] -> {workdir / f'TRENDS-{level}.csv'}: "
            + ", ".join(f"{labels.count(t):,} {t}" for t in ("rising", "steady", "fading"))
        )
        console.print(trends_view(table, 4))
    back = forecast_backtest(events, now, level="category", n_boot=200)
    m, n = back["metrics"]["model"], back["metrics"]["naive_last_window"]
    console.print(
        f"next-week forecast per category, backtested on the last 7 days ({time.perf_counter() - started:.1f}s): "
        f"WAPE {m['wape']:.4f} vs {n['wape']:.4f} for last week's count (naive), Poisson deviance {m['poisson_deviance']:.2f} vs "
        f"{n['poisson_deviance']:.2f}"
    )
