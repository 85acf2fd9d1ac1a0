# The two commands of the README: `make demo` runs the main job, `make test` runs the tests.
# Both set up everything they need on a fresh machine (a virtual environment with the project).
VENV ?= .venv
PYTHON ?= python3
SHARED ?= ../shared
TEACHER_WEIGHTS ?= $(SHARED)/weights/vgg16_imagenet_features.pth

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: install test demo
install: $(VENV)/.installed

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

# Until the streaming line exists, the main job trains a model on the real toothbrush category
# and evaluates it.
demo: $(VENV)/.installed
	$(VENV)/bin/lineguard train $(SHARED)/data/mvtec_toothbrush --out runs/toothbrush.pt --teacher-weights $(TEACHER_WEIGHTS)
	$(VENV)/bin/lineguard eval runs/toothbrush.pt $(SHARED)/data/mvtec_toothbrush --report runs/toothbrush-report
