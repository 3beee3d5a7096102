# startgate: `make demo` shows the outage on a simulated cluster; `make test` is what CI runs.
# Both build .venv themselves (tools/bootstrap) from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:/usr/sbin:/sbin:$(PATH)

.PHONY: all venv test lint typecheck unit demo bench soak clean

all: test

venv:
	@PYTHON=$(PYTHON) VENV=$(VENV) ./tools/bootstrap

lint: venv
	$(VENV)/bin/ruff check startgate tests bench
	$(VENV)/bin/ruff format --check startgate tests bench

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest -q

test: lint typecheck unit

demo: venv
	$(VENV)/bin/startgate demo

bench: venv
	$(PY) -m bench.run

soak: venv
	$(VENV)/bin/startgate soak --minutes $${SOAK_MINUTES:-5}

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
