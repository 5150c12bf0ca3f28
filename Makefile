# `make test` and `make demo` create .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= data/synthetic-demo
RUN    ?= runs/demo

.PHONY: test demo install clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

demo: $(VENV)/.installed
	$(PY) -m reidlib synth $(DATA) --preset demo
	$(PY) -m reidlib describe $(DATA)
	$(PY) -m reidlib baseline --data $(DATA)

clean-venv:
	rm -rf $(VENV)
