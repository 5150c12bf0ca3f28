# The targets a newcomer needs; `make help` lists them. Every target creates .venv on first use and
# installs the exact versions of requirements.lock into it (with their hashes), then the project.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= data/synthetic-demo
RUN    ?= runs/demo

.PHONY: help install lock check lint format test bench gpu-check demo tracklets report walkthrough ablations beyond methods lab clean-venv

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with the locked versions and the project (editable)

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install --require-hashes -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	touch $@

lock: ## write requirements.lock again from pyproject.toml's ranges (pip-tools, hashes)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install pip-tools
	$(VENV)/bin/pip-compile --generate-hashes --allow-unsafe --extra dev --extra pretrained --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml

lint: $(VENV)/.installed ## ruff: the linter and the formatter's check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed ## ruff: format the code and fix what the linter can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint ## the quick check before a commit: lint, then the tests not marked slow (about a minute)
	$(PY) -m pytest -q -m "not slow"

test: lint ## lint, then the whole test suite (what CI runs)
	$(PY) -m pytest -q

# The benchmarks print ratios measured side by side in one run; each takes minutes (docs/scaling.md).
BENCH ?= bench_step bench_selection bench_evaluation bench_evaluation_scale bench_epoch bench_cluster bench_query bench_synthetic
BENCH_DATA ?= ../shared/data/cuhk01
bench: $(VENV)/.installed ## every benchmark in turn (BENCH="bench_step" for one; bench_epoch reads BENCH_DATA)
	@for b in $(BENCH); do \
		echo "=== $$b"; \
		if [ $$b = bench_epoch ]; then $(PY) -m benchmarks.$$b --data $(BENCH_DATA) --config configs/real-cpu.yaml || exit 1; \
		else $(PY) -m benchmarks.$$b || exit 1; fi; \
	done

# The GPU check (docs/gpu.md) runs with .venv's Python when there is one, else with python3, so that
# a bare CUDA PyTorch image needs no install: make gpu-check GPU_CHECK_ARGS="--quick".
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_CHECK_ARGS ?=
gpu-check: ## on a CUDA machine: device tests, paper steps, selection, graph, NCCL in one table (< 8 min)
	$(GPU_PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

demo: $(VENV)/.installed ## generate the synthetic set, show it, score baselines, train, compare, report
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib describe $(DATA)
	$(PY) -m reidlib baseline --data $(DATA)
	$(PY) -m reidlib train --data $(DATA) --run-dir $(RUN)-untrained --config configs/demo.yaml --set epochs=0
	$(PY) -m reidlib train --data $(DATA) --run-dir $(RUN) --config configs/demo.yaml
	$(PY) -m reidlib compare $(RUN)-untrained $(RUN)
	$(PY) -m reidlib report --run-dir $(RUN) --out reports/$(notdir $(RUN)).html --overwrite

TRACKLETS ?= data/synthetic-tracklets
tracklets: $(VENV)/.installed ## video re-ID: the synthetic tracklets preset, untrained vs trained (about 9 minutes)
	$(PY) -m reidlib synth $(TRACKLETS) --preset tracklets --seed 0
	$(PY) -m reidlib describe $(TRACKLETS)
	$(PY) -m reidlib train --data $(TRACKLETS) --run-dir runs/tracklets-untrained --config configs/tracklets.yaml --set epochs=0
	$(PY) -m reidlib train --data $(TRACKLETS) --run-dir runs/tracklets --config configs/tracklets.yaml
	$(PY) -m reidlib compare runs/tracklets-untrained runs/tracklets

report: $(VENV)/.installed ## the report notebooks on a run dir (RUN, default runs/demo) into reports/<name>.html
	$(PY) -m reidlib report --run-dir $(RUN) --out reports/$(notdir $(RUN)).html --overwrite

walkthrough: $(VENV)/.installed ## the teaching walkthrough (about a minute) into reports/walkthrough.html
	$(PY) -m reidlib notebook 00_walkthrough --out reports/walkthrough.html --overwrite

ABLATION_EPOCHS ?= 8
ablations: $(VENV)/.installed ## the paper's ablations, 7 arms x 3 seeds on the demo set (resumable; runs/ablations)
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib notebook 02_ablations --set data_dir=$(DATA) epochs=$(ABLATION_EPOCHS) --out reports/ablations.html --overwrite

# Arms by name or slug: make beyond BEYOND_ARMS=recipe-camera-groups-band-20-camera-debias,jaccard
BEYOND_DATASETS ?= cuhk01:../shared/data/cuhk01,pku_reid:../shared/data/pku_reid
BEYOND_SEEDS    ?= 0,1,2
BEYOND_ARMS     ?= all
BEYOND_EPOCHS   ?= 0
beyond: $(VENV)/.installed ## selection rules beyond the paper around the CPU recipe x 2 real sets x 3 seeds (runs/beyond)
	$(PY) -m reidlib notebook 04_beyond_the_paper --set datasets=$(BEYOND_DATASETS) seeds=$(BEYOND_SEEDS) arms=$(BEYOND_ARMS) epochs=$(BEYOND_EPOCHS) --out reports/beyond.html --overwrite

METHODS_DATASETS ?= demo:$(DATA),cuhk01:../shared/data/cuhk01,pku_reid:../shared/data/pku_reid
METHODS_SEEDS    ?= 0,1,2
METHODS_EPOCHS   ?= 0
methods: $(VENV)/.installed ## untrained, SCL and Cluster Contrast x the demo set and 2 real sets x 3 seeds (runs/methods)
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib notebook 05_methods_side_by_side --set datasets=$(METHODS_DATASETS) seeds=$(METHODS_SEEDS) epochs=$(METHODS_EPOCHS) --out reports/methods.html --overwrite

lab: $(VENV)/.installed ## JupyterLab on notebooks/ with the project's environment as its kernel
	$(PY) -m jupyter lab --notebook-dir notebooks

clean-venv: ## remove .venv
	rm -rf $(VENV)
