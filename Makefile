# Two entry points: `make test` and `make book`. Both create .venv on first use.
PYTHON  ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= toy
STAMP   := $(VENV)/.calib-installed

.PHONY: setup test book world clean-book bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, so the range in pyproject.toml is already satisfied
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[book,ray,dev]"
	touch $@

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

world: $(STAMP)
	$(BIN)/calib world build

book: $(STAMP)
	$(BIN)/python -m calib.book --profile $(PROFILE)
	$(BIN)/jupyter-book build . --path-output book -W --keep-going

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-book:
	rm -rf book/_build
