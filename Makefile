# OpenBell: `make run` and `make test` do all set-up on a fresh machine.
# Debian's CPython 3.11 is built with PGO and LTO (and a static libpython): the same code runs
# about 25 % faster than a --enable-shared build such as pyenv's. Use it when it is there.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && /usr/bin/python3.11 -c 'import venv, ensurepip' 2>/dev/null && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint venv clean demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/openbell serve --demo

test: $(STAMP)
	$(VENV)/bin/ruff check openbell tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check openbell tests bench
	$(VENV)/bin/ruff format --check openbell tests bench
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
