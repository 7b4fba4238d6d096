# One command each, from a fresh clone (Linux or macOS, Python >= 3.10):
#   make demo    .venv with torch==2.13.0 (the CPU build) and autofr, then the default search
#                (embedded digits_unet, 40 trials, results and MLflow store in ./autofr_outputs)
#   make test    .venv with the test extras, PostgreSQL + MLflow on loopback, chromium, every test
#                (the same as `bash .ci/run`, which CI runs)
# GPU users: make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu128" (any torch build).
# Extra arguments for the search: make demo ARGS="model=digits_dit search.n_trials=60"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
ARGS ?=

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip on some machines warns about configured index locations that are absent; nothing to act on
QUIET := 2>&1 | { grep -v '^WARNING: Location' || true; }

.PHONY: demo test install clean

demo: $(VENV)/.autofr-installed
	$(VENV)/bin/autofr-search $(ARGS)

install: $(VENV)/.autofr-installed

# torch first and pinned: an unpinned or ranged torch pulls a multi-GB CUDA build.
# (PYTHONWARNINGS: setuptools warns about every editable install; nothing to act on either)
$(VENV)/.autofr-installed: pyproject.toml setup.py
	@echo "make: $(VENV) with $(TORCH) and autofr (a few minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --upgrade pip $(QUIET)
	@$(VENV)/bin/python -m pip install -q $(TORCH) $(QUIET)
	@PYTHONWARNINGS=ignore::UserWarning $(VENV)/bin/python -m pip install -q -e ".[dashboard]" $(QUIET)
	@touch $@

test:
	bash .ci/run

clean:
	rm -rf build dist *.egg-info autofr/_conf
