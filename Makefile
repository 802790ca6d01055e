# The two commands of the README:
#   make demo   set up on a fresh machine, then run the main job (synthetic corpus -> train -> evaluate -> mp4)
#   make test   set up, then run the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
WORKDIR ?= runs/demo

.PHONY: setup demo test test-fast test-slow reproduce bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) demo.py --workdir $(WORKDIR)

test: setup
	$(PY) -m pytest -q

# Unit tests on in-memory batches and one tiny training run per stage: no corpus, no subprocess CLIs.
test-fast: setup
	$(PY) -m pytest -q -m 'not slow and not corpus and not cli and not multiprocess and not learning and not heavy'

test-slow: setup
	$(PY) -m pytest -q -m slow

reproduce: setup
	$(PY) reproduce.py --workdir runs/reproduce

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
