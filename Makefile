# `make test` and `make demo` create .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= data/synthetic-demo
RUN    ?= runs/demo

.PHONY: test demo tracklets report walkthrough ablations beyond methods lab install clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Generate the synthetic set, show it, score untrained baselines, train, compare, report.
demo: $(VENV)/.installed
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib describe $(DATA)
	$(PY) -m reidlib baseline --data $(DATA)
	$(PY) -m reidlib train --data $(DATA) --run-dir $(RUN)-untrained --config configs/demo.yaml --set epochs=0
	$(PY) -m reidlib train --data $(DATA) --run-dir $(RUN) --config configs/demo.yaml
	$(PY) -m reidlib compare $(RUN)-untrained $(RUN)
	$(PY) -m reidlib report --run-dir $(RUN)

# Video re-ID: the synthetic tracklets preset, an untrained and a trained run, compared (about 9 minutes).
TRACKLETS ?= data/synthetic-tracklets
tracklets: $(VENV)/.installed
	$(PY) -m reidlib synth $(TRACKLETS) --preset tracklets --seed 0
	$(PY) -m reidlib describe $(TRACKLETS)
	$(PY) -m reidlib train --data $(TRACKLETS) --run-dir runs/tracklets-untrained --config configs/tracklets.yaml --set epochs=0
	$(PY) -m reidlib train --data $(TRACKLETS) --run-dir runs/tracklets --config configs/tracklets.yaml
	$(PY) -m reidlib compare runs/tracklets-untrained runs/tracklets

# Run the report notebooks on a run dir (default runs/demo) into reports/<name>.html.
report: $(VENV)/.installed
	$(PY) -m reidlib report --run-dir $(RUN)

# The teaching walkthrough (about a minute on a CPU) into reports/walkthrough.html.
walkthrough: $(VENV)/.installed
	$(PY) -m reidlib notebook 00_walkthrough --out reports/walkthrough.html

# The paper's ablations, 7 arms x 3 seeds on the demo set (resumable; runs in runs/ablations).
ABLATION_EPOCHS ?= 8
ablations: $(VENV)/.installed
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib notebook 02_ablations --set data_dir=$(DATA) epochs=$(ABLATION_EPOCHS) --out reports/ablations.html

# Beyond the paper: 22 arms around the CPU recipe x 2 real sets x 3 seeds (resumable; runs in
# runs/beyond). Arms by name or slug: make beyond BEYOND_ARMS=recipe-ca-jaccard-camera-debias,jaccard
BEYOND_DATASETS ?= cuhk01:../shared/data/cuhk01,pku_reid:../shared/data/pku_reid
BEYOND_SEEDS    ?= 0,1,2
BEYOND_ARMS     ?= all
BEYOND_EPOCHS   ?= 0
beyond: $(VENV)/.installed
	$(PY) -m reidlib notebook 04_beyond_the_paper --set datasets=$(BEYOND_DATASETS) seeds=$(BEYOND_SEEDS) arms=$(BEYOND_ARMS) epochs=$(BEYOND_EPOCHS) --out reports/beyond.html

# The methods side by side: untrained, SCL and Cluster Contrast over configs/real-cpu.yaml x the demo
# set and 2 real sets x 3 seeds (resumable; runs in runs/methods).
METHODS_DATASETS ?= demo:$(DATA),cuhk01:../shared/data/cuhk01,pku_reid:../shared/data/pku_reid
METHODS_SEEDS    ?= 0,1,2
METHODS_EPOCHS   ?= 0
methods: $(VENV)/.installed
	$(PY) -m reidlib synth $(DATA) --preset demo --seed 0
	$(PY) -m reidlib notebook 05_methods_side_by_side --set datasets=$(METHODS_DATASETS) seeds=$(METHODS_SEEDS) epochs=$(METHODS_EPOCHS) --out reports/methods.html

# JupyterLab on notebooks/ with the project's environment as its Python kernel.
lab: $(VENV)/.installed
	$(PY) -m jupyter lab --notebook-dir notebooks

clean-venv:
	rm -rf $(VENV)
