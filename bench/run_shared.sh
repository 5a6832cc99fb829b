#!/usr/bin/env bash
# make bench-shared: ../shared/bench on every log in ../shared/data (decayrec at its defaults, through its CLI),
# then decayrec's model card for the same training file and cutoff, then bench/results/shared.md.
# About 65 minutes on 2 cores (taobao-fav alone over 30).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=../shared
OUT=bench/results/shared
WORK=${DECAYREC_BENCH_WORKDIR:-/tmp/decayrec-bench-work}
mkdir -p "$OUT/cards"
for pair in amazon-beauty:amazon-beauty amazon-grocery:amazon-grocery yoochoose:yoochoose-clicks-100k taobao-fav:taobao-fav; do
  name=${pair%%:*}; dir=${pair##*:}
  "$SHARED/bench/run.sh" "$name" --events "$SHARED/data/$dir/events.csv.gz" --decayrec .venv/bin/decayrec \
      --workdir "$WORK" --out "$OUT/$name.json" | tee "$OUT/$name.txt"
  at=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['reco']['protocol']['cutoff'])" "$OUT/$name.json")
  # The same training file and cutoff as the bench gave decayrec: its search is deterministic, so this card is
  # what it chose there (an unbounded budget, so that a slower machine cannot cut the search short).
  .venv/bin/decayrec recommend --events "$WORK/$name/recommend/train_events.csv" --users "$WORK/$name/recommend/users.txt" \
      --at "$at" --k 20 --budget-seconds 100000 --out "$WORK/$name/card-recs.csv" --card "$OUT/cards/$name.json" 2> "$OUT/cards/$name.log"
  rm -f "$OUT/cards/$name.differs"
  cmp -s <(sort "$WORK/$name/recommend/recs.csv") <(sort "$WORK/$name/card-recs.csv") || touch "$OUT/cards/$name.differs"
done
.venv/bin/python bench/shared_summary.py "$OUT"/*.json --cards "$OUT/cards" --out bench/results/shared.md
