VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install demo lint test test-slow test-arithmetic bench docs clean

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

## The equivalence tests (paths_agree) under the arithmetic of other CPU kinds, emulated here:
## AVX-512 BF16 without AMX (as an AMD EPYC Zen 4), AVX2 without bf16, and no vector kernels.
ARITHMETIC_KINDS := "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16" \
	"ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" \
	"ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=default"
test-arithmetic: install
	for kind in $(ARITHMETIC_KINDS); do echo "== $$kind"; \
		env $$kind $(PY) -m pytest -q -m paths_agree -n auto --maxprocesses 4 tests || exit 1; done

bench: install
	$(VENV)/bin/ddkit bench --suite quick

## Build the documentation site into site/ (warnings are errors); browse: python -m http.server -d site
docs: install
	$(PY) -m mkdocs build --strict -d site

clean:
	rm -rf $(VENV) runs build site *.egg-info
