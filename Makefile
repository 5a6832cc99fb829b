# The two commands: `make demo` and `make test`. Both bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-shared bench-ingest bench-decay bench-recommend bench-lapse bench-trends bench-serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the package metadata changes (idempotent and quick on re-runs).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/decayrec demo --workdir .demo

test: lint
	$(BIN)/python -m pytest

# The quick tier (under a minute): everything not marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# Lint, format and type checks (run by make test, and so by CI).
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: bench-ingest bench-decay bench-recommend bench-lapse bench-trends bench-serve

# ../shared/bench on every log in ../shared/data, with decayrec's cards: bench/results/shared.md (about 65 minutes).
bench-shared: $(STAMP)
	bench/run_shared.sh

bench-ingest: $(STAMP)
	$(BIN)/python bench/bench_ingest.py --rows 1000000 --out bench/results/ingest.json

bench-decay: $(STAMP)
	$(BIN)/python bench/bench_decay.py --out bench/results/decay.json
	$(BIN)/python bench/bench_decay_recovery.py --seeds 0 --presets default-2000,fashion,sessions,reviews,purchases,grocery --out bench/results/decay_recovery.json | tee bench/results/decay_recovery.md
	$(BIN)/python bench/bench_decay_fit.py --out bench/results/decay_fit.json

# Every real log and preset, with the sequence model (alone, and offered to decayrec): several hours here.
bench-recommend: $(STAMP)
	$(BIN)/python bench/bench_recommend.py --out bench/results/recommend.json

bench-lapse: $(STAMP)
	$(BIN)/python bench/bench_lapse.py --out bench/results/lapse.json

bench-trends: $(STAMP)
	$(BIN)/python bench/bench_trends.py --out bench/results/trends.json

# decayrec serve on loopback under load: bench/results/serve.{json,md} (about 4 minutes).
bench-serve: $(STAMP)
	$(BIN)/python bench/bench_serve.py --out bench/results/serve.json

clean:
	rm -rf $(VENV) .demo .pytest_cache
