# The two commands a newcomer needs: `make run` and `make test`. Both build .venv
# themselves from the pinned lock file, so a fresh machine needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml requirements-dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Dev-only passphrase for the demo keystore under ./var (never used outside a laptop).
export RESERVE_PASSPHRASE ?= dev-only-passphrase

run: $(STAMP)
	$(BIN)/reserve demo
	$(BIN)/reserve verify --trust var/log.pub

test: $(STAMP)
	$(BIN)/ruff check ledger keys api tests bench migrations
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
