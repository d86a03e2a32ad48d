# kubeboot — the two commands a new machine needs: `make demo` and `make test`.
# Each creates .venv (Python 3.11+) and installs what it needs; nothing else is required.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO   := .kubeboot/demo

.PHONY: demo test lint unit integration bench install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel >/dev/null

# The tests run against the installed package (not the source tree), so install non-editable.
$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install '.[test,lint]'
	touch $@

demo: | $(BIN)/python
	$(PIP) install .
	$(BIN)/python -m kubeboot.workers.demo --out $(DEMO)

test: $(VENV)/.test-deps
	$(PIP) install --no-deps --force-reinstall .
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest -n 2 tests

# mypy and import-linter read the folders as the package they install as (kubeboot.config, ...):
# a tree of links in the venv lays them out that way without copying anything.
lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	rm -rf $(VENV)/src && mkdir -p $(VENV)/src/kubeboot
	for d in config tasks workflows workers sandbox; do ln -s ../../../$$d $(VENV)/src/kubeboot/$$d; done
	$(BIN)/mypy
	PYTHONPATH=$(VENV)/src $(BIN)/lint-imports

unit: $(VENV)/.test-deps
	$(BIN)/pytest -n 2 tests/unit

integration: $(VENV)/.test-deps
	$(BIN)/pytest -n 2 tests/integration

bench: $(VENV)/.test-deps
	$(PIP) install --no-deps --force-reinstall .
	$(BIN)/python -m bench.node_phases
	$(BIN)/python -m bench.cli_startup
	$(BIN)/python -m bench.orchestration
	$(BIN)/python -m bench.worker_memory
	$(BIN)/python -m bench.sandbox_node
	$(BIN)/python -m bench.full_init
	$(BIN)/python -m bench.apiserver

# For working on kubeboot itself: an editable install.
install-dev: $(VENV)/.test-deps
	$(PIP) install --no-deps -e .

clean:
	rm -rf $(VENV) .kubeboot build *.egg-info
