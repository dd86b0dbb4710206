# precision-multimodal: `make demo` runs the main job on the embedded synthetic cohort; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
SHARED_DATA ?= ../shared/data
export OMP_NUM_THREADS ?= 2

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev,tracking]'
	touch $(STAMP)

demo: install
	$(PY) -m multimodal.demo --out $(DEMO_DIR)

test: install
	OMP_NUM_THREADS=1 MULTIMODAL_SHARED_DATA=$(SHARED_DATA) $(PY) -m pytest -q -p no:cacheprovider tests

bench: install
	MULTIMODAL_SHARED_DATA=$(SHARED_DATA) $(PY) -m bench.run_all

lint: install
	$(VENV)/bin/ruff check multimodal adapters cohorts tests bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache build *.egg-info
