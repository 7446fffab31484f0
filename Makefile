# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORE ?= featstore

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned to the CPU build, so nothing pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/featctl embed --source data/anime.tsv --store $(STORE)
	$(BIN)/featctl info item_text --store $(STORE)
	$(BIN)/featctl coverage --interactions data/interactions.tsv --store $(STORE)

test: $(STAMP)
	$(BIN)/ruff check featctl tests bench data
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/openai.py
	$(BIN)/python bench/clip.py
	$(BIN)/python bench/coverage.py --repeats 3
	$(BIN)/python bench/index.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/train_quality.py

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache
