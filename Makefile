# Two commands set everything up on a fresh machine:
#   make study   - venv + pinned packages + Fashion-MNIST, then the default 16-step study
#   make test    - the same setup, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: study test test-fast lint setup data list plot bench bench-study

study: setup data
	$(PY) runner.py --steps all

test: setup data
	$(PY) -m pytest -q

# the fast set (under 5 minutes): everything but the tests marked slow
test-fast: setup data
	$(PY) -m pytest -q -m "not slow"

# ruff's lint and format check (config in pyproject.toml); `ruff format .` fixes the format
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

list: setup
	$(PY) runner.py --list

plot: setup
	$(PY) runner.py plot

# Throughput of every step and of torchvision's models (~17 min on 2 idle cores)
bench: setup
	$(PY) benchmarks/throughput.py

# The default study end to end, its wall time split into model compute vs the rest (~15 min)
bench-study: setup data
	$(PY) benchmarks/study_overhead.py

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# Debian ships Fashion-MNIST as a package; elsewhere the runner downloads it with torchvision.
data:
	@if [ -d $(FASHION_MNIST) ] || [ -n "$$FASHION_MNIST_DIR" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: Fashion-MNIST not in $(FASHION_MNIST); the runner will try torchvision's download"; fi
