# speechbrain_ext: two commands on a fresh Debian machine.
#   make demo   generate the built-in corpus, pre-train, transfer, evaluate, export, verify
#   make test   run the test suite
# Each creates .venv if missing and installs what it needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_output

.PHONY: demo test venv system-deps bench clean

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,onnx,hub]'
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@bash scripts/system_deps.sh

demo: system-deps $(STAMP)
	$(PY) recipes/demo.py --output_folder $(DEMO_DIR)

test: system-deps $(STAMP)
	$(PY) -m pytest -q --doctest-modules speechbrain_ext data_prep tests

# the quick benchmarks (minutes); the transfer ablation is benchmarks/ablation.py (about an hour)
bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_embeddings.py
	$(PY) benchmarks/bench_verifier.py
	$(PY) benchmarks/bench_prepare.py --num_files 20000

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
