# The two commands a newcomer needs: `make run` and `make test`. Both build .venv
# themselves from the pinned lock file, so a fresh machine needs only python3. The lock
# pins the core, the `server` extra and `dev`; the project itself goes in as
# `.[server,dev]` without resolving again (--no-deps). An auditor needs only the core:
# `pip install .` (issue #10).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml requirements-dev.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps -e '.[server,dev]'
	touch $(STAMP)

venv: $(STAMP)

# Dev-only passphrase for the demo keystore under ./var (never used outside a laptop).
export RESERVE_PASSPHRASE ?= dev-only-passphrase

# `make run`: the demo ledger on SQLite under ./var, verified, then the service on
# http://127.0.0.1:8000 (OpenAPI at /docs). The unsafe demo login is for this laptop demo
# only: POST /auth/demo-login {"user": "olga"} returns a token without a password.
run: $(STAMP)
	$(BIN)/reserve demo
	$(BIN)/reserve verify --trust var/log.pub
	@echo "Tokens: POST http://127.0.0.1:8000/auth/demo-login {\"user\": NAME}, or: $(BIN)/reserve token --user NAME"
	RESERVE_UNSAFE_DEMO_LOGIN=1 $(BIN)/reserve serve --host 127.0.0.1 --port 8000 --print-tokens

test: $(STAMP)
	$(BIN)/ruff check ledger keys api cli witness tests bench migrations
	$(BIN)/mypy
	$(BIN)/pytest --numprocesses auto --maxprocesses 4 --dist loadfile

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
