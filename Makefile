# Two commands do everything: `make test` and `make book` (see README.md).
# Both create .venv when it is missing and install the exact versions of requirements.lock
# (a no-op when that is already done: the stamp file is newer than the lock and pyproject.toml).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo
JOBS    ?= 2

.PHONY: install test test-gpu gpu-wheels book run lock browser clean help

help:
	@echo "make test   install (if needed) and run the test suite"
	@echo "make book   install (if needed), run every notebook (PROFILE=$(PROFILE), JOBS=$(JOBS) at once) and build the book in _build/html"
	@echo "make test-gpu  on a GPU machine: the tests that need CUDA or MPS"
	@echo "make lock   re-freeze requirements.lock and environment.yml from .venv"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# Headless Chromium and its driver, for the test that opens the built book in a real browser.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

test: install browser
	$(PY) -m pytest -q

# On a machine with a CUDA or MPS device: the tests marked gpu (they fail, not skip, without one).
test-gpu: install
	$(PY) -m pytest -q -m gpu tests/test_gpu.py

# The wheels benchmarks/gpu.py installs on a GPU machine without internet (see BENCHMARKS.md).
gpu-wheels:
	$(PY) -m pip download --no-deps --dest benchmarks/wheels -r benchmarks/gpu_wheels.txt

run: install
	$(VENV)/bin/gigassl run --profile $(PROFILE) --jobs $(JOBS)

book: run
	$(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going

lock:
	$(PY) scripts/freeze.py

clean:
	rm -rf _build book/executed runs
