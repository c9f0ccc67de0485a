VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install demo lint test test-slow bench docs clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

## Distil the embedded default dataset (digits, IPC 1) and evaluate it next to random real images and the full set.
demo: install
	$(VENV)/bin/ddkit demo --out runs/demo

## Lint and format check (ruff, pinned in pyproject.toml).
lint: install
	$(PY) -m ruff check src tests benchmarks docs
	$(PY) -m ruff format --check src tests benchmarks docs

## Lint, then run the test suite (fast tests; `make test-slow` for the marked learning tests),
## one worker per core (at most 4; pytest-xdist, whole files per worker).
test: install lint
	$(PY) -m pytest -n auto --maxprocesses 4 --dist loadfile

test-slow: install
	$(PY) -m pytest -m slow

bench: install
	$(VENV)/bin/ddkit bench --suite quick

## Build the documentation site into site/ (warnings are errors); browse: python -m http.server -d site
docs: install
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) runs build site *.egg-info
