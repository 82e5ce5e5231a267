"""The app factory each worker process of ``reserve serve --workers N`` calls (issue #11).

uvicorn imports it by name in every worker, so each process builds its own Services
(engines, pools, group committer, token verifier) after it starts: nothing with a socket
or a thread is shared across a fork. Settings and the passphrase come from the
environment the supervisor validated and handed down.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from api.app import create_app, freeze_startup_heap
from api.config import load_api_settings
from api.services import build_services
from keys import passphrase_from_env_or_prompt
from ledger.logconfig import configure_logging


def app_from_env() -> FastAPI:
    settings = load_api_settings()
    level = os.environ.get("RESERVE_LOG_LEVEL") or "info"  # a service logs its requests
    configure_logging(level, settings.ledger.log_format)
    svc = build_services(
        settings, passphrase=lambda: passphrase_from_env_or_prompt(env=os.environ, prompt=False)
    )
    app = create_app(svc)
    freeze_startup_heap()
    return app
