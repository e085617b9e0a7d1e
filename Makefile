# Two commands matter: `make demo` and `make test`. Both create .venv and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench bench-detectors bench-pipeline bench-decode bench-detection bench-estimation chaos install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing modelmon and its dependencies into $(VENV) (about 1–2 minutes)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/modelmon demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy modelmon streams sinks detectors retrain_trigger dashboards

bench: bench-detectors bench-decode bench-pipeline bench-detection

# Failure scenarios against the real broker, workers, sink and ClickHouse (not part of `make test`).
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos

bench-detectors: $(STAMP)
	bash bench/setup_peers.sh && $(BIN)/python bench/bench_detectors.py

bench-pipeline: $(STAMP)
	test -x $(BIN)/py-spy || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_pipeline.py

bench-decode: $(STAMP)
	$(BIN)/python bench/bench_decode.py

bench-detection: $(STAMP)
	$(BIN)/python bench/bench_detection.py --json bench/results/detection.json

bench-estimation: $(STAMP)
	bash bench/setup_peers.sh && $(BIN)/python bench/bench_estimation.py

clean:
	rm -rf $(VENV) .modelmon .pytest_cache .ruff_cache .mypy_cache reports
