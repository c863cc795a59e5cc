# OpenBell: `make run` and `make test` do all set-up on a fresh machine.
# Debian's CPython 3.11 is built with PGO and LTO (and a static libpython): the same code runs
# about 25 % faster than a --enable-shared build such as pyenv's. Use it when it is there.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && /usr/bin/python3.11 -c 'import venv, ensurepip' 2>/dev/null && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The compiled core: Cython builds these modules' C extensions in place (setup.py); a change to
# any source of the core rebuilds them, so a stale extension never shadows newer Python.
CORE_SOURCES := $(wildcard openbell/core/*.py openbell/core/*.pxd) setup.py
CORE_BUILT := $(VENV)/.core-built

.PHONY: run test bench lint venv clean demo core

$(STAMP): pyproject.toml
	@command -v cc >/dev/null || command -v gcc >/dev/null || { echo "make: a C compiler is needed for the compiled core: apt-get install gcc python3-dev" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77'
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

$(CORE_BUILT): $(STAMP) $(CORE_SOURCES)
	$(PY) setup.py -q build_ext --inplace
	touch $(CORE_BUILT)

venv: $(CORE_BUILT)

core: $(CORE_BUILT)

run: $(CORE_BUILT)
	$(VENV)/bin/openbell serve --demo --fix-port 9878

# The whole suite on the compiled core, then the core's own suite again on the interpreted
# core (the reference the compiled one must equal).
# The browser tests (tests/web) drive Debian's chromium through Playwright (never a browser
# download): installed here when missing, nothing to do when present.
test: $(CORE_BUILT)
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(VENV)/bin/ruff check openbell tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest
	OPENBELL_PURE_PYTHON=1 $(PY) -m pytest tests/core

lint: $(CORE_BUILT)
	$(VENV)/bin/ruff check openbell tests bench
	$(VENV)/bin/ruff format --check openbell tests bench
	$(VENV)/bin/mypy

bench: $(CORE_BUILT)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build
	rm -f openbell/core/*.c openbell/core/*.so
