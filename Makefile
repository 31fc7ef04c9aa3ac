# Two commands do everything: `make test` and `make book` (see README.md).
# Both create .venv when it is missing and install the exact versions of requirements.lock
# (a no-op when that is already done: the stamp file is newer than the lock and pyproject.toml). --no-compile: Python
# compiles a module when it is first imported, so byte-compiling every installed file up front (about 40 s of an
# 89 s install here) is skipped.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= demo
JOBS    ?= 2

.PHONY: install test test-fast test-robust test-gpu gpu-wheels book run lock browser clean help

help:
	@echo "make test   install (if needed) and run the test suite (everything; CI runs this)"
	@echo "make test-fast  the unit tests only (no smoke book, Chromium, torchrun, benchmark dry runs): about 2 minutes"
	@echo "make test-robust  the numeric tests under other thread counts and CPU kernels (see README)"
	@echo "make book   install (if needed), run every notebook (PROFILE=$(PROFILE), JOBS=$(JOBS) at once) and build the book in _build/html"
	@echo "make test-gpu  on a GPU machine: the tests that need CUDA or MPS"
	@echo "make lock   re-freeze requirements.lock and environment.yml from .venv"

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile -e .
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

# Everyday loop: the tests not marked slow (the smoke book, Chromium, the GPU and benchmark dry runs, torchrun and
# the longer trainings are marked slow and run by `make test` only), on one thread (small ops on 2 contended threads
# run many times slower).
test-fast: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow and not gpu"

# The tests marked numeric (training, losses, probes: see tests/conftest.py) under the settings another machine of the
# reference kind may have: 1 and 2 threads, the issue's AVX2 kernels, and older kernels (ATen's default vector code,
# oneDNN SSE4.1, MKL SSE4.2). A test that passes here does not depend on this CPU's last digits.
ROBUST_SETTINGS = "OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1" \
                  "OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2" \
                  "ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2" \
                  "ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2"
test-robust: install
	@for setting in $(ROBUST_SETTINGS); do \
	  echo "== $$setting"; env $$setting $(PY) -m pytest -q -m "numeric and not gpu" || exit 1; \
	done

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
