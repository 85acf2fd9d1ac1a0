# The two commands of the README: `make demo` runs the main job, `make test` runs the tests.
# Both set up everything they need on a fresh machine (a virtual environment with the project).
VENV ?= .venv
PYTHON ?= python3

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install test demo
install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

# The main job: a whole line on this machine (Redis, a model, workers, the dashboard, a stream of
# generated parts); Ctrl-C stops it. See README.md, "Running a line".
demo: $(VENV)/.installed
	$(VENV)/bin/lineguard demo
