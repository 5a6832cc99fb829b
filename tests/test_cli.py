"""The command line as CONTRACT.md section 2 fixes it: help, exit codes, outputs, one-line errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # make test-fast leaves this module out

BIN = Path(sys.executable).parent / "decayrec"
CMD = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "decayrec.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*CMD, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize(
    "command", ["", "ingest", "export", "demo", "fit-decay", "profile", "recommend", "evaluate", "churn", "trends"]
)
def test_every_command_has_help(command):
    result = run(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_ingest_then_export(write_csv, tmp_path):
    path = write_csv(["u1,i1,view,2017-11-25T08:00:00Z,,,,", "u2,i1,view,bad,,,,", "u1,i1,view,2017-11-25T08:00:00Z,,,,"])
    result = run("ingest", str(path), "--store", str(tmp_path / "s"), "--quarantine", str(tmp_path / "q.csv"))
    assert result.returncode == 0, result.stderr
    assert "kept 1 + quarantined 1 + duplicates 1 = rows read 3" in result.stdout
    assert (tmp_path / "q.csv").exists()
    out = tmp_path / "out.csv"
    result = run("export", "--store", str(tmp_path / "s"), "--out", str(out), "--at", "2017-11-25T08:00:00Z")
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as fh:
        assert list(csv.reader(fh)) == [
            ["user_id", "item_id", "event", "timestamp", "category_id", "price", "quantity", "session_id", "event_id", "rec_id"],
            ["u1", "i1", "view", "2017-11-25T08:00:00Z", "", "", "", "", "", ""],
        ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["ingest", "{tmp}/missing.csv", "--store", "{tmp}/s"], "does not exist"),
        (["ingest", "{csv}", "--store", "{tmp}/s", "--format", "nope"], "unknown --format"),
        (["export", "--store", "{tmp}/none", "--out", "{tmp}/o.csv"], "not a decayrec store"),
        (["export", "--store", "{tmp}/s2", "--out", "{tmp}/o.csv", "--at", "tomorrow"], "not a time"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, fragment, write_csv, tmp_path):
    csv_path = write_csv(["u1,i1,view,2017-11-25T08:00:00Z,,,,"])
    run("ingest", str(csv_path), "--store", str(tmp_path / "s2"))
    result = run(*[a.format(tmp=tmp_path, csv=csv_path) for a in args])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert not (tmp_path / "s").exists() or "nope" not in args  # an unknown format creates no store


def test_usage_error_exits_2():
    assert run("ingest").returncode == 2
    assert run("no-such-command").returncode == 2


def test_demo_runs_and_summarises(tmp_path):
    result = run("demo", "--workdir", str(tmp_path / "demo"), "--users", "60")
    assert result.returncode == 0, result.stderr
    assert "what is in the store" in result.stdout and "purchase" in result.stdout
    assert (tmp_path / "demo" / "store" / "events.duckdb").exists()
    again = run("demo", "--workdir", str(tmp_path / "demo"), "--users", "60")
    assert again.returncode == 0 and again.stdout.count("kept") == result.stdout.count("kept")


@pytest.fixture(scope="module")
def small_shop(tmp_path_factory):
    from decayrec.simulate import SimConfig, simulate

    directory = tmp_path_factory.mktemp("shop")
    events, _ = simulate(SimConfig(n_users=150, n_categories=6, n_items=120, days=90, seed=2)).write(directory)
    return events


def test_fit_decay_and_profile(small_shop, tmp_path):
    import json

    decay = tmp_path / "DECAY.json"
    result = run("fit-decay", "--events", str(small_shop), "--out", str(decay), "--grid-points", "7")
    assert result.returncode == 0, result.stderr
    doc = json.loads(decay.read_text())
    assert {"by_event", "by_category"} <= set(doc["half_life_days"]) and "fitted_at" in doc
    user = small_shop.read_text().splitlines()[1].split(",")[0]
    profile_json = tmp_path / "p.json"
    result = run("profile", "--events", str(small_shop), "--user", user, "--decay", str(decay), "--out", str(profile_json))
    assert result.returncode == 0, result.stderr
    assert f"profile of {user}" in result.stdout
    prof = json.loads(profile_json.read_text())
    assert prof["user_id"] == user and prof["categories"]["n_live"] + prof["categories"]["n_faded"] >= 1
    png = tmp_path / "p.png"
    result = run(
        "profile", "--events", str(small_shop), "--user", user, "--decay", str(decay), "--out", str(png), "--at", "2024-02-15"
    )
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    unknown = run("profile", "--events", str(small_shop), "--user", "nobody", "--decay", str(decay))
    assert unknown.returncode == 2 and "nobody" in unknown.stderr
    bad_out = run("profile", "--events", str(small_shop), "--user", user, "--decay", str(decay), "--out", str(tmp_path / "p.txt"))
    assert bad_out.returncode == 2
    assert "user_scale" not in doc  # no per-user data unless asked for
    per_user = tmp_path / "DECAY_users.json"
    result = run("fit-decay", "--events", str(small_shop), "--out", str(per_user), "--grid-points", "7", "--per-user")
    assert result.returncode == 0, result.stderr
    assert "per-user multiplier" in result.stdout
    scales = json.loads(per_user.read_text())["user_scale"]["by_user"]
    assert user in scales and all(0.25 <= v <= 4.0 for v in scales.values())


def test_recommend_contract(small_shop, tmp_path):
    users = tmp_path / "users.txt"
    known = [line.split(",")[0] for line in small_shop.read_text().splitlines()[1:4]]
    users.write_text("\n".join([*known, "  ", "never-seen-user", known[0]]) + "\n")
    recs = tmp_path / "recs.csv"
    result = run(
        "recommend", "--events", str(small_shop), "--users", str(users), "--k", "5", "--model", "repeat", "--out", str(recs)
    )
    assert result.returncode == 0, result.stderr
    with open(recs, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["user_id", "item_id", "rank", "score", "reason"]
    listed = set(known) | {"never-seen-user"}
    assert {r["user_id"] for r in rows} == listed  # every listed user, unknown included, and nobody else
    for user in listed:
        ranks = [int(r["rank"]) for r in rows if r["user_id"] == user]
        assert ranks == list(range(1, len(ranks) + 1)) and 1 <= len(ranks) <= 5
    assert all(r["reason"].strip() for r in rows)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert run("recommend", "--events", str(small_shop), "--users", str(empty), "--out", str(recs)).returncode == 2


def test_recommend_configures_itself_and_writes_its_card(small_shop, tmp_path):
    import json

    users = tmp_path / "users.txt"
    known = [line.split(",")[0] for line in small_shop.read_text().splitlines()[1:30]]
    users.write_text("\n".join([*dict.fromkeys(known), "never-seen-user"]) + "\n")
    recs, card = tmp_path / "recs.csv", tmp_path / "out" / "CARD.json"
    result = run(
        "recommend",
        "--events",
        str(small_shop),
        "--users",
        str(users),
        "--horizon-days",
        "5",
        "--budget-seconds",
        "3",
        "--card",
        str(card),
        "--out",
        str(recs),
    )
    assert result.returncode == 0, result.stderr
    assert "use horizon 5 days (given)" in result.stderr and "NDCG@20" in result.stderr  # the search, on stderr
    doc = json.loads(card.read_text())
    assert doc["horizon_days"] == 5.0 and doc["served"] in ("ranker", "repeat", "covisit", "itemknn", "als", "decayed_popularity")
    assert doc["tried"] and all("settings" in t and "score" in t for t in doc["tried"])
    # A 3-second budget on this shop (the whole search takes longer, even on a fast machine): the search stops
    # starting trials, says so, and still serves a tuned model.
    assert doc["budget_hit"] is True and any(t["score"] is None for t in doc["tried"])
    assert {"chosen", "fitted_at"} <= set(doc)
    with open(recs, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["user_id"] for r in rows} == set(known) | {"never-seen-user"}
    inferred = run("recommend", "--events", str(small_shop), "--users", str(users), "--k", "3", "--out", str(recs))
    assert inferred.returncode == 0 and "median gap between a user's active days" in inferred.stderr
    # Options of the self-configuration belong to the default model only.
    bad = run(
        "recommend",
        "--events",
        str(small_shop),
        "--users",
        str(users),
        "--model",
        "repeat",
        "--card",
        str(card),
        "--out",
        str(recs),
    )
    assert bad.returncode == 2 and "--model decayrec" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_writes_results_json(small_shop, tmp_path):
    import json

    out = tmp_path / "results.json"
    result = run(
        "evaluate",
        "--events",
        str(small_shop),
        "--models",
        "popularity,repeat",
        "--k",
        "10",
        "--horizon-days",
        "7",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert {"cutoff", "horizon", "k", "users_evaluated"} <= set(doc["protocol"]) and doc["protocol"]["k"] == 10
    assert [m["name"] for m in doc["models"]] == ["popularity", "repeat"]
    for m in doc["models"]:
        assert {"ndcg", "recall", "hit_rate", "mrr", "coverage", "fit_seconds", "recommend_seconds"} <= set(m)
        assert 0 <= m["ndcg"] <= 1
    bad = run("evaluate", "--events", str(small_shop), "--models", "nope", "--out", str(out))
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_churn_contract_and_plan(small_shop, tmp_path):
    risk, plan = tmp_path / "risk.csv", tmp_path / "plan.csv"
    at = "2024-03-01T00:00:00Z"
    result = run(
        "churn",
        "--events",
        str(small_shop),
        "--at",
        at,
        "--horizon-days",
        "14",
        "--out",
        str(risk),
        "--plan",
        str(plan),
        "--plan-model",
        "repeat",
        "--k",
        "4",
    )
    assert result.returncode == 0, result.stderr
    with open(risk, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["user_id", "p_active", "risk_rank"]
    # One row for every user with an event before --at, and nobody else.
    with open(small_shop, newline="") as fh:
        before = {r["user_id"] for r in csv.DictReader(fh) if r["timestamp"] <= at}
    assert {r["user_id"] for r in rows} == before and len(rows) == len(before)
    assert sorted(int(r["risk_rank"]) for r in rows) == list(range(1, len(rows) + 1))
    p = {r["user_id"]: float(r["p_active"]) for r in rows}
    assert all(0.0 <= v <= 1.0 for v in p.values())
    by_rank = sorted(rows, key=lambda r: int(r["risk_rank"]))
    assert [float(r["p_active"]) for r in by_rank] == sorted(p.values())  # rank 1 = most likely to lapse
    with open(plan, newline="") as fh:
        steps = list(csv.DictReader(fh))
    assert steps and {s["action"] for s in steps} <= {"faded_reminder", "new_arrivals", "reengage_recs", "none"}
    assert all(1 - p[s["user_id"]] >= 0.5 for s in steps)  # only users at risk
    assert all(len(s["items"].split("|")) <= 4 for s in steps if s["items"])
    bg = run("churn", "--events", str(small_shop), "--at", at, "--model", "bgnbd", "--out", str(risk))
    assert bg.returncode == 0, bg.stderr
    # A horizon as long as the history (the log starts in January): answered, not refused.
    for model in ("decayrec", "paretonbd"):
        long = run("churn", "--events", str(small_shop), "--at", at, "--horizon-days", "60", "--model", model, "--out", str(risk))
        assert long.returncode == 0, long.stderr
        with open(risk, newline="") as fh:
            answered = list(csv.DictReader(fh))
        assert {r["user_id"] for r in answered} == before
        assert all(0.0 <= float(r["p_active"]) <= 1.0 and float(r["expected_active_days"]) >= 0 for r in answered)
        if model == "paretonbd":  # one model for every horizon: a longer one is likelier to see activity
            assert sum(float(r["p_active"]) for r in answered) > sum(p.values())


def test_trends_contract(small_shop, tmp_path):
    out, png = tmp_path / "trends.csv", tmp_path / "trends.png"
    result = run("trends", "--events", str(small_shop), "--out", str(out), "--plot", str(png))
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:5] == ["key", "level", "interest", "momentum", "trend"]
    with open(small_shop, newline="") as fh:
        categories = {r["category_id"] for r in csv.DictReader(fh) if r["category_id"]}
    assert {r["key"] for r in rows} == categories and all(r["level"] == "category" for r in rows)
    assert {r["trend"] for r in rows} <= {"rising", "steady", "fading"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    items = run("trends", "--events", str(small_shop), "--level", "item", "--out", str(out))
    assert items.returncode == 0, items.stderr
    bad = run("trends", "--events", str(small_shop), "--level", "brand", "--out", str(out))
    assert bad.returncode == 2 and "--level item" in bad.stderr
