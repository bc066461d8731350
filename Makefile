# One command does all set-up and runs the tests on a fresh machine: `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test demo setup clean

test: setup
	$(PY) -m pytest -q --durations=15

# The main job: data, tokenizer, SFT, evaluation, GRPO, evaluation, report (~20 minutes on 2 cores).
# A second run into runs/demo needs DEMO_ARGS=--overwrite (or DEMO_ARGS="--out runs/demo2").
demo: setup
	$(VENV)/bin/r1kit demo $(DEMO_ARGS)

# The CPU build of torch 2.13.0 goes in first and explicitly: letting pip resolve torch
# on its own would download a multi-GB CUDA build.
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,serve]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
