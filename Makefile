# Two commands for a fresh machine:  make demo   |   make test
# Both create .venv, install wslgraph (editable) with what it needs, and skip
# setup steps that are already done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wslgraph-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "wslgraph needs Python >= 3.10"' \
	  || { echo "error: $(PYTHON) is missing or older than 3.10; install Python 3.10+ (e.g. apt-get install python3 python3-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) \
	  || { echo "error: could not create $(VENV); as root: apt-get install -y python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel (an unpinned torch pulls GBs of CUDA packages)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/wslgraph demo

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check wslgraph tests benchmarks examples

bench: setup
	$(PY) benchmarks/convert.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
