"""Summarise ../shared/bench runs (bench/results/shared/*.json) into bench/results/shared.md.

    python bench/shared_summary.py bench/results/shared/*.json --cards bench/results/shared/cards --out bench/results/shared.md

The JSON files are what ``../shared/bench/run.sh NAME --out FILE`` writes (``make bench-shared``
runs it on every log in ../shared/data); the cards are decayrec's CARD.json for the same
training file and cutoff (``decayrec recommend ... --card``), saying what it chose there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _f(x, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def chose(card: dict) -> str:
    s = card["ranker_settings"]
    if card["served"] != "ranker":
        return f"serves its single source {card['served']} (floor); horizon {card['horizon_days']:.3g} d"
    sources = "+".join(x for x in s["sources"] if x != "popular")
    return (
        f"ranker; horizon {card['horizon_days']:.3g} d; {s['train_windows']} x {s['label_days']:.3g} d label windows; "
        f"{sources}; {s['budget']} per source; {s['num_leaves']} leaves" + ("; own items left out" if s["exclude_seen"] else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--cards", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/results/shared.md"))
    args = ap.parse_args()
    out = [
        "# decayrec at its defaults through ../shared/bench",
        "",
        (
            "Written by `make bench-shared` (`../shared/bench/run.sh` on every log in ../shared/data, then "
            "`python bench/shared_summary.py`). Protocol: ../shared/bench/README.md."
        ),
        "",
        "## Recommendations (NDCG@20)",
        "",
        "| log | users | decayrec | best tuned peer | ratio | decayrec fit s | implicit ALS fit s (tuning s) | what decayrec chose |",
        "|---|---|---|---|---|---|---|---|",
    ]
    churn = ["", "## Lapse (ROC-AUC, churn task)", "", "| log | users | decayrec | best peer | ratio |", "|---|---|---|---|---|"]
    for path in sorted(args.runs):
        doc = json.loads(path.read_text())
        name = doc["dataset"]
        reco = doc["reco"]
        models = {m["name"]: m for m in reco["models"] if m.get("ndcg") is not None}
        main_row = models.get("decayrec")
        peers = [m for n, m in models.items() if n != "decayrec"]
        best = max(peers, key=lambda m: m["ndcg"])
        als = models.get("implicit-als")
        card_path = args.cards / f"{name}.json" if args.cards else None
        what = chose(json.loads(card_path.read_text())) if card_path and card_path.exists() else "-"
        differs = card_path.with_suffix(".differs") if card_path else None
        if differs is not None and differs.exists():
            what += " (re-run; its lists differ from the bench's)"
        out.append(
            f"| {name} | {reco['protocol']['users_evaluated']:,} | {_f(main_row and main_row['ndcg'])} | {best['name']} {_f(best['ndcg'])} "
            f"| {_f(reco.get('decayrec_over_best_peer_ndcg'), 3)} | {main_row['fit_seconds']:.0f} "
            f"| {als['fit_seconds']:.1f} ({als['tune_seconds']:.0f}) | {what} |"
        )
        if doc.get("churn"):
            ch = doc["churn"]
            rows = {m["name"]: m for m in ch["models"] if isinstance(m.get("roc_auc"), (int, float))}
            others = [m for n, m in rows.items() if n != "decayrec"]
            if others and "decayrec" in rows:
                top = max(others, key=lambda m: m["roc_auc"])
                churn.append(
                    f"| {name} | {ch['protocol']['users']:,} | {_f(rows['decayrec']['roc_auc'])} | {top['name']} {_f(top['roc_auc'])} "
                    f"| {_f(ch.get('decayrec_over_best_peer_roc_auc'), 3)} |"
                )
    notes = [
        "",
        "The cards come from re-running decayrec on the bench's own training file and cutoff; where the re-run's",
        "lists are not byte-identical to the bench's (`run_shared.sh` compares them), the row says so:",
        "implicit's multithreaded ALS is not bit-reproducible, and a close validation choice can flip.",
    ]
    args.out.write_text("\n".join(out + churn + notes) + "\n")
    print("\n".join(out + churn))


if __name__ == "__main__":
    main()
