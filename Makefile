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
	@# The SyncNet converter's test needs CPU PyTorch (on this project's machines a local wheel); best effort:
	@# without it that one test is skipped, with the reason.
	$(PY) -m pip install -q -e '.[test,sync-reference]' || echo "warning: no CPU PyTorch: the SyncNet converter test will be skipped"
	@# The shipped model's programs compiled into the start-up cache (~/.cache/thflax), so the first video
	@# after set-up does not compile; best effort (without it that video only starts slower).
	$(PY) -m thflax.inference.warm_up || echo "warning: start-up cache not filled: the first video will compile first"
	touch $@

# The web page's browser test drives Debian's Chromium (tests/test_app.py): installed here when missing
# and we are root (CI is); elsewhere that test is skipped, with the reason.
setup: $(VENV)/.installed
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium + chromium-driver (for the browser test)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	      echo "warning: could not install chromium; the browser test will not run"; \
	  else \
	    echo "note: no chromium/chromedriver and not root: the browser test (tests/test_app.py) will be skipped"; \
	  fi; \
	fi

demo: setup
	$(PY) demo.py --workdir $(WORKDIR)

# One pytest worker per core (most tests use one core: dlib, ffmpeg, subprocess CLIs); a test file stays
# on one worker, so its session fixtures are built once per worker that needs them.
test: setup
	$(PY) -m pytest -q -n auto --dist loadfile

# Unit tests on in-memory batches and one tiny training run per stage: no corpus, no subprocess CLIs.
test-fast: setup
	$(PY) -m pytest -q -n auto -m 'not slow and not corpus and not cli and not multiprocess and not learning and not heavy and not browser'

test-slow: setup
	$(PY) -m pytest -q -m slow

reproduce: setup
	$(PY) reproduce.py --workdir runs/reproduce

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
