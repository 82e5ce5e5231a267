"""The web pages (issue #13): server-rendered (Jinja2) views over the same reads and role
checks as the JSON API, plus a little JavaScript that holds the user's Ed25519 key in the
browser (WebCrypto, non-extractable, IndexedDB) and signs each entry itself.

Only wiring lives here: :func:`mount` adds the pages, their static files and a local
``/docs`` to an app that :func:`api.app.create_app` built.
"""

from __future__ import annotations

from fastapi import FastAPI

from api.web import docs, pages, prepare, session
from api.web.paths import STATIC_DIR, is_web_path

__all__ = ["is_web_path", "mount"]


def mount(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    session.install(app)
    app.include_router(pages.router)
    app.include_router(session.router)
    app.include_router(prepare.router)
    docs.install(app)
    app.mount("/web/static", StaticFiles(directory=STATIC_DIR), name="web-static")
