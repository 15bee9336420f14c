# Aura jobs engine. `make run` and `make test` work on a fresh Debian machine.
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
SYS_PKGS  := ffmpeg espeak-ng chromium nodejs npm curl jq postgresql
#: the page's type checker (typescript, pinned in package-lock.json); stamped like the venv
NPM_STAMP := node_modules/.installed
TSC       := node_modules/.bin/tsc
DATA_DIR  ?= ./data
HOST      ?= 127.0.0.1
PORT      ?= 8765

.PHONY: setup system-deps run test lint bench clean

setup: system-deps $(STAMP) $(NPM_STAMP)

# Installs the system tools with apt-get when missing and running as root; otherwise says what to install.
system-deps:
	@bash scripts/system-deps.sh $(SYS_PKGS)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -e '.[test,bench]'  # make test runs every benchmark quickly
	mkdir -p .typecheck && ln -sfn .. .typecheck/aura  # mypy sees the repo root as `aura`
	touch $(STAMP)

$(NPM_STAMP): package-lock.json
	npm ci --no-audit --no-fund
	touch $(NPM_STAMP)

run: setup
	@echo "Aura: http://$(HOST):$(PORT)  (data in $(DATA_DIR))"
	$(VENV)/bin/aura serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(TSC) -p tsconfig.json
	node --test tests/js/
	$(VPY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(TSC) -p tsconfig.json

bench: setup
	$(VPY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache node_modules
